"""What a batch run will do, before any of it is done: its settings, the files left to do (a
file whose outputs are all present is skipped), the model and what it can do, and the pool
of actors the cluster holds beside the decode tasks."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from serve_app.batch.inputs import MEDIA_EXTENSIONS, BatchError, MediaFile, media_files
from serve_app.errors import ServiceError
from serve_app.formats import SPEAKER_FORMATS
from serve_app.jobs.job import JOB_FORMATS
from serve_app.models.catalogue import ModelCatalogue, ModelInfo
from serve_app.models.embedded import EMBEDDED_MODELS
from serve_app.models.ids import WHISPER_1
from serve_app.options import DecodeOptions
from serve_app.settings import AppSettings

__all__ = [
    "BATCH_FORMATS",
    "DECODE_CPUS",
    "ActorPool",
    "BatchPlan",
    "BatchSettings",
    "find_model",
    "is_done",
    "plan_batch",
    "plan_pool",
]

BATCH_FORMATS: tuple[str, ...] = (*JOB_FORMATS, *SPEAKER_FORMATS)
"""What --format may be: the job API's formats, and with --diarize the speaker formats (`all`
then writes them too)."""
DECODE_CPUS = 0.25
"""CPUs a decode task asks for: a sliver, since reading and decoding a file is quick beside
transcribing it, and the actor pool must leave at least this much of the cluster free."""


@dataclass(frozen=True, slots=True)
class BatchSettings:
    """What a batch run is told: the command line's options, as values."""

    media: Path
    output: Path
    model: str = AppSettings().default_model
    model_dir: Path = AppSettings().model_dir
    language: str | None = None
    job_format: str = "txt"
    extensions: tuple[str, ...] = tuple(MEDIA_EXTENSIONS)
    actors: int | None = None
    cpus_per_actor: int = 1
    gpus_per_actor: float | None = None
    compute_type: str = AppSettings().compute_type
    beam_size: int = AppSettings().beam_size
    diarize: bool = False
    diarization_model: str = AppSettings().diarization_model
    """The diarization pipeline, a model of the model folder (the service's default: the embedded one)."""
    progress: bool = True


# -- resuming --------------------------------------------------------------------------------


def is_done(file: MediaFile, output_dir: Path, job_format: str, *, diarized: bool = False) -> bool:
    """Whether an earlier run wrote all of this file's outputs (each is whole or absent)."""
    return all(path.is_file() for path in file.outputs(output_dir, job_format, diarized=diarized))


# -- the model -------------------------------------------------------------------------------


def find_model(
    model_dir: Path, name: str, *, kind: str = "transcription", openai_model_alias: str = AppSettings().openai_model_alias
) -> ModelInfo:
    """The model as the service finds it (`whisper-1` is the `openai_model_alias`), once the embedded
    models are in the folder as the ModelStore puts them there: each written once, and one a
    user deleted not brought back."""
    catalogue = ModelCatalogue(Path(model_dir).expanduser())
    catalogue.seed(EMBEDDED_MODELS)
    model = catalogue.find(openai_model_alias if name == WHISPER_1 else name)
    if model is None:
        listed = ", ".join(model.id for model in catalogue.models()) or "none"
        raise BatchError(f"model {name!r} is not in {catalogue.root} (there: {listed}); download it with POST /v1/models")
    if model.kind != kind:
        raise BatchError(f"model {model.id} is a {model.kind} model; name a {kind} model")
    return model


# -- the files -------------------------------------------------------------------------------


@dataclass(slots=True)
class BatchPlan:
    """The files of a run, sorted by what becomes of them, and the models they need."""

    output: Path
    """The output folder, absolute."""
    files: list[MediaFile]
    """Every file the folder or manifest names."""
    todo: list[MediaFile] = field(default_factory=list)
    """The files whose outputs are not all present, each with its language."""
    runnable: list[MediaFile] = field(default_factory=list)
    """Those the model can transcribe."""
    refused: list[tuple[MediaFile, str]] = field(default_factory=list)
    """Those it cannot (an English-only model and a manifest's other language), with why."""
    model: ModelInfo | None = None
    """The transcription model; None when nothing is left to do."""
    diarization: ModelInfo | None = None
    """The diarization model with --diarize; None without, or when nothing is left to do."""

    @property
    def skipped(self) -> int:
        return len(self.files) - len(self.todo)


def plan_batch(settings: BatchSettings) -> BatchPlan:
    """What is left to do of `settings.media`, and with which models; BatchError when the batch
    cannot start. Nothing is written but the embedded models into the model folder."""
    # Here, not at the top: Ray Serve, which it imports, would slow every decode worker's start.
    from serve_app.pipeline import check_model_fits

    if settings.job_format not in BATCH_FORMATS:
        raise BatchError(f"format must be one of {', '.join(BATCH_FORMATS)}, not {settings.job_format!r}")
    if settings.job_format in SPEAKER_FORMATS and not settings.diarize:
        raise BatchError(f"format {settings.job_format} writes who spoke when: add --diarize")
    output = Path(os.path.abspath(settings.output))
    files = media_files(settings.media, settings.extensions)
    plan = BatchPlan(output=output, files=files)
    plan.todo = [
        replace(file, language=file.language or settings.language)
        for file in files
        if not is_done(file, output, settings.job_format, diarized=settings.diarize)
    ]
    if not plan.todo:
        return plan
    plan.model = find_model(settings.model_dir, settings.model)
    try:
        check_model_fits(plan.model, DecodeOptions(language=settings.language))
    except ServiceError as error:
        raise BatchError(error.reason) from None
    if settings.diarize:
        plan.diarization = find_model(settings.model_dir, settings.diarization_model, kind="diarization")
    for file in plan.todo:
        try:
            check_model_fits(plan.model, DecodeOptions(language=file.language))  # a manifest's language
            plan.runnable.append(file)
        except ServiceError as error:
            plan.refused.append((file, error.reason))
    return plan


# -- the actors ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActorPool:
    """The transcription actors: how many, and what each asks Ray for."""

    actors: int
    cpus: int
    gpus: float

    @property
    def device(self) -> str:
        return "cuda" if self.gpus > 0 else "cpu"


def plan_pool(resources: dict[str, float], *, actors: int | None, cpus: int, gpus: float | None) -> ActorPool:
    """The pool the cluster's `resources` can hold beside at least one decode task: as many
    actors as fit when `actors` is None; BatchError when the asked-for pool does not fit."""
    total_cpus, total_gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    if gpus is None:
        gpus = 1.0 if total_gpus >= 1 else 0.0
    fit = int((total_cpus - DECODE_CPUS) // cpus)
    if gpus > 0:
        fit = min(fit, int(total_gpus // gpus))
    cluster = f"this cluster ({total_cpus:g} CPU, {total_gpus:g} GPU) beside the {DECODE_CPUS:g} CPU a decode task needs"
    actor = f"{cpus} CPU" + (f" and {gpus:g} GPU" if gpus else "")
    if fit < 1:
        raise BatchError(f"an actor of {actor} does not fit on {cluster}: ask for less (--cpus-per-actor, --gpus-per-actor)")
    if actors is None:
        actors = fit
    if actors > fit:
        raise BatchError(
            f"{actors} actors of {actor} do not fit on {cluster}: use --actors {fit}, or give the cluster "
            "more CPUs (Ray counts what `ray start --num-cpus` says; one more than the cores leaves room to decode)"
        )
    return ActorPool(actors=actors, cpus=cpus, gpus=gpus)
