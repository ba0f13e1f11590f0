"""Batch transcription on a Ray cluster: a folder or a manifest of media files in, the job API's
output files out, as a Ray Data pipeline.

    python -m serve_app.batch MEDIA OUTPUT [--model base] [--format all] [--language de] ...
    ray job submit -- python -m serve_app.batch MEDIA OUTPUT ...

`MEDIA` is a folder (searched recursively for media files by extension), one media file, or
a manifest: a `.csv` with a `path` column, a `.jsonl` of objects with a `path`, or any other
file with one path a line. A CSV or JSONL manifest may give each file its `language`. Relative paths in a
manifest are relative to the manifest's folder.

Outputs keep the folders of the inputs: `MEDIA/sub/a.mp3` writes `OUTPUT/sub/a.txt` (and the
other formats), so that files of the same name in different folders do not collide. For a
manifest the folders are taken relative to the deepest folder that holds all its files. Two
inputs of one folder that differ only in their extension (`talk.mp3`, `talk.wav`) keep it in
their outputs' names (`talk.mp3.txt`, `talk.wav.txt`).

The pipeline:

    files ─► decode: Ray tasks, DECODE_CPUS each ─► transcribe: a pool of actors, each a
    WhisperEngine with the model loaded ─► the driver writes each file's outputs as its
    transcript arrives (write_outputs: each file whole or absent), counts, and notes failures

With `--diarize` each actor also holds a pyannote pipeline (serve_app/diarization/pipeline.py; the
model folder's `--diarization-model`, by default the service's, the embedded one) and labels
the segments with their speakers after transcribing (serve_app/diarization/speakers.py); the outputs show
them as the formats do.

Each actor asks for `--cpus-per-actor` CPUs and transcribes with as many threads, and for
`--gpus-per-actor` GPUs (1 by default on a cluster that has GPUs), so the actors packed on a
node never run more threads than it has cores. Decoding to 16 kHz takes FFmpeg a small part
of the time Whisper takes to transcribe the result, so a decode task asks for a quarter of a
CPU (DECODE_CPUS), and the pool must leave at least that free: were the actors to hold every
CPU, no file could be decoded for them and the batch would wait for ever. The batch checks
this before it starts. When it starts its own Ray (no RAY_ADDRESS, no --address), it declares
one CPU more than the host has cores for the decode tasks: the actors keep every core busy and
the decoding, a few percent of the work, shares them.

Resuming: a file whose outputs are all present is skipped, whatever options wrote them, so a
batch that stopped (or one run again over a folder with new files) does only what is left. Files that fail (not media,
no audio stream, cut short) are reported and listed in `OUTPUT/failures.jsonl` (`{"path",
"reason"}` a line, the last run's failures; absent when none failed) and tried again by the
next run; they do not stop the batch.

Exit status: 0 when every file is transcribed (now or by an earlier run), 3 when some files
failed (EXIT_FAILED_FILES), 2 when the batch cannot start (bad arguments, no such model or
input), 1 when it broke off (the traceback says why; what was written is kept).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from serve_app.engine.audio import SAMPLE_RATE, decode_audio
from serve_app.engine.budget import thread_budget
from serve_app.errors import ServiceError
from serve_app.jobs.job import JOB_FORMATS
from serve_app.jobs.outputs import output_names, write_outputs
from serve_app.languages import UnknownLanguage, normalise_language
from serve_app.models.catalogue import ModelCatalogue, ModelInfo
from serve_app.models.embedded import EMBEDDED_MODELS
from serve_app.models.ids import WHISPER_1
from serve_app.options import DecodeOptions
from serve_app.settings import AppSettings
from serve_app.transcript import Transcript

__all__ = [
    "DECODE_CPUS",
    "EXIT_FAILED_FILES",
    "MEDIA_EXTENSIONS",
    "BatchError",
    "BatchSettings",
    "BatchSummary",
    "Failure",
    "MediaFile",
    "find_media",
    "main",
    "plan_files",
    "read_manifest",
    "run_batch",
]

MEDIA_EXTENSIONS = (
    # audio
    ".aac .aif .aiff .amr .ape .au .flac .m4a .mka .mp2 .mp3 .oga .ogg .opus .ra .wav .wma .wv "
    # video
    ".3gp .avi .flv .m2ts .m4v .mkv .mov .mp4 .mpeg .mpg .mts .ogv .ts .vob .webm .wmv"
).split()
"""What a folder is searched for, case aside (--extensions replaces it)."""

DECODE_CPUS = 0.25
"""CPUs a decode task asks for: a sliver, since reading and decoding a file is quick beside
transcribing it, and the actor pool must leave at least this much of the cluster free."""

FAILURES_FILE = "failures.jsonl"
EXIT_OK, EXIT_BROKEN, EXIT_USAGE, EXIT_FAILED_FILES = 0, 1, 2, 3


class BatchError(Exception):
    """The batch cannot start: the message says what to change (exit status 2)."""


@dataclass(frozen=True, slots=True)
class MediaFile:
    """One input file and where its outputs go."""

    path: Path
    """Absolute path of the media file."""
    folder: Path
    """The outputs' folder, relative to the output folder (`.` for the top)."""
    name: str
    """The name the outputs are named after: `a.mp3` writes `a.txt`, ..."""
    language: str | None = None
    """From the manifest, else the batch's --language; None: detected."""

    def outputs(self, output_dir: Path, job_format: str) -> list[Path]:
        return output_names(self.name, output_dir / self.folder, job_format)


@dataclass(frozen=True, slots=True)
class Failure:
    path: str
    reason: str

    def to_json(self) -> str:
        return json.dumps({"path": self.path, "reason": self.reason}, ensure_ascii=False)


@dataclass(slots=True)
class BatchSummary:
    files: int
    """Files the folder or manifest names."""
    transcribed: int = 0
    skipped: int = 0
    """Files an earlier run wrote every output of."""
    failures: list[Failure] = field(default_factory=list)
    audio_seconds: float = 0.0
    """Audio of the files this run transcribed."""
    wall_seconds: float = 0.0
    """From the pipeline's start (Ray's own start left out) to the last file's outputs."""

    @property
    def speed(self) -> float:
        """Audio seconds transcribed a wall-clock second."""
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def line(self) -> str:
        return (
            f"{self.files} files: {self.transcribed} transcribed, {self.skipped} already done, "
            f"{len(self.failures)} failed; {self.audio_seconds / 3600:.3f} h of audio in {self.wall_seconds:.1f} s "
            f"({self.speed:.2f} audio s / wall s)"
        )


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


# -- the inputs ------------------------------------------------------------------------------


def _language(value: str | None, where: str) -> str | None:
    """A language code, None for detection; BatchError naming `where` for one Whisper lacks."""
    try:
        return normalise_language(value)
    except UnknownLanguage as exc:
        raise BatchError(f"{where}: {exc}") from None


def find_media(folder: Path, extensions: Iterable[str] = MEDIA_EXTENSIONS) -> list[tuple[Path, str | None]]:
    """The media files under `folder`, sorted, by extension (hidden files and folders left out)."""
    wanted = {extension.lower() for extension in extensions}
    found = []
    for root, folders, files in os.walk(folder):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in wanted:
                found.append((Path(root, name), None))
    return found


def read_manifest(manifest: Path) -> list[tuple[Path, str | None]]:
    """The files a manifest lists, with their languages: CSV (a `path` column, optional
    `language`), JSONL (`{"path", "language"}` a line) or one path a line (`#` comments)."""
    try:
        return _read_manifest(manifest)
    except UnicodeDecodeError:
        raise BatchError(f"{manifest} is not a manifest (UTF-8 text) nor a file of a media extension") from None


def _read_manifest(manifest: Path) -> list[tuple[Path, str | None]]:
    base = manifest.parent
    entries: list[tuple[str, str | None]] = []
    with open(manifest, newline="", encoding="utf-8-sig") as lines:
        match manifest.suffix.lower():
            case ".csv":
                rows = csv.DictReader(lines)
                if "path" not in (rows.fieldnames or ()):
                    raise BatchError(f"{manifest}: a CSV manifest needs a header with a path column (and optionally language)")
                for number, row in enumerate(rows, 2):
                    if (row.get("path") or "").strip():
                        entries.append((row["path"].strip(), _language(row.get("language"), f"{manifest} line {number}")))
            case ".jsonl" | ".ndjson":
                for number, text in enumerate(lines, 1):
                    if not text.strip():
                        continue
                    try:
                        row = json.loads(text)
                    except json.JSONDecodeError as error:
                        raise BatchError(f"{manifest} line {number} is not JSON ({error.msg})") from None
                    if not isinstance(row, dict) or not isinstance(row.get("path"), str) or not row["path"].strip():
                        raise BatchError(f'{manifest} line {number}: each line must be an object with a "path" string')
                    language = row.get("language")
                    if language is not None and not isinstance(language, str):
                        raise BatchError(f"{manifest} line {number}: language must be a string such as en")
                    entries.append((row["path"].strip(), _language(language, f"{manifest} line {number}")))
            case _:
                entries = [(text.strip(), None) for text in lines if text.strip() and not text.lstrip().startswith("#")]
    listed: dict[Path, str | None] = {}
    for path, language in entries:
        listed.setdefault(Path(os.path.normpath(base / os.path.expanduser(path))), language)
    return list(listed.items())


def plan_files(found: list[tuple[Path, str | None]], root: Path) -> list[MediaFile]:
    """Where each file's outputs go: its folder relative to `root`, named after the file (after
    its whole name where another file of that folder has the same stem)."""
    stems: dict[tuple[Path, str], int] = {}
    for path, _ in found:
        key = (path.parent, path.stem)
        stems[key] = stems.get(key, 0) + 1
    planned = []
    for path, language in found:
        name = path.name if stems[(path.parent, path.stem)] > 1 else path.stem
        # output_names names outputs after the stem of the name it is given.
        planned.append(MediaFile(path, path.parent.relative_to(root), f"{name}{path.suffix}", language))
    return planned


def media_files(media: Path, extensions: Iterable[str]) -> list[MediaFile]:
    """The files a folder or manifest names, with their outputs' places."""
    media = Path(os.path.abspath(media))
    if media.is_dir():
        return plan_files(find_media(media, extensions), media)
    if media.is_file() and media.suffix.lower() in extensions:
        return plan_files([(media, None)], media.parent)  # one media file
    if media.is_file():
        listed = read_manifest(media)
        if not listed:
            return []
        root = Path(os.path.commonpath([path.parent for path, _ in listed]))
        return plan_files(listed, root)
    raise BatchError(f"{media} does not exist: give a folder of media files or a manifest of their paths")


def is_done(file: MediaFile, output_dir: Path, job_format: str) -> bool:
    """Whether an earlier run wrote all of this file's outputs (each is whole or absent)."""
    return all(path.is_file() for path in file.outputs(output_dir, job_format))


# -- the model -------------------------------------------------------------------------------


def find_model(
    model_dir: Path, name: str, *, kind: str = "transcription", default_model: str = AppSettings().default_model
) -> ModelInfo:
    """The model as the service finds it (`whisper-1` is the default model), once the embedded
    models are in the folder as the ModelStore puts them there: each written once, and one a
    user deleted not brought back."""
    catalogue = ModelCatalogue(Path(model_dir).expanduser())
    catalogue.seed(EMBEDDED_MODELS)
    model = catalogue.find(default_model if name == WHISPER_1 else name)
    if model is None:
        listed = ", ".join(model.id for model in catalogue.models()) or "none"
        raise BatchError(f"model {name!r} is not in {catalogue.root} (there: {listed}); download it with POST /v1/models")
    if model.kind != kind:
        raise BatchError(f"model {model.id} is a {model.kind} model; name a {kind} model")
    return model


# -- the pipeline ----------------------------------------------------------------------------


def decode_media(row: dict[str, Any]) -> dict[str, Any]:
    """A decode task: the file's audio at 16 kHz, or why it has none."""
    audio, error = np.zeros(0, dtype=np.float32), ""
    try:
        with open(row["path"], "rb") as media:
            audio = decode_audio(media)
    except ServiceError as failure:
        error = failure.reason
    except OSError as failure:
        error = f"cannot read the file ({failure.strerror or failure})"
    except Exception as failure:  # one file's fault must not stop the others
        error = f"decoding failed ({type(failure).__name__}: {failure})"
    return row | {"audio": audio, "duration": audio.size / SAMPLE_RATE, "error": error}


class Transcribe:
    """An actor of the transcription pool: a WhisperEngine holding the batch's model (and, to
    diarize, a pyannote pipeline with the same threads and device), fed one decoded file a
    call. A file it cannot transcribe comes back with the reason."""

    def __init__(self, model: ModelInfo, engine: dict[str, Any], diarization_path: str | None = None) -> None:
        from serve_app.engine.whisper import WhisperEngine

        self.model = model
        self.engine = WhisperEngine(max_loaded=1, **engine)
        self.engine.model(model.path)  # loaded now: a model that cannot load stops the batch at once
        self.diarizer = None
        if diarization_path is not None:
            import torch

            from serve_app.diarization.pipeline import load_pipeline

            torch.set_num_threads(engine["cpu_threads"])
            self.diarizer = load_pipeline(diarization_path, device=engine["device"])

    def _label_speakers(self, transcript: Transcript, audio: np.ndarray) -> None:
        from serve_app.diarization.pipeline import diarize
        from serve_app.diarization.speakers import assign_speakers

        assign_speakers(transcript.segments, diarize(self.diarizer, audio, exclusive=True))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        transcripts, errors = [], []
        for audio, language, error in zip(batch["audio"], batch["language"], batch["error"], strict=True):
            transcript = None
            if not error:
                try:
                    audio = np.asarray(audio)
                    transcript = self.engine.transcribe(audio, self.model, DecodeOptions(language=language or None))
                    if self.diarizer is not None:
                        self._label_speakers(transcript, audio)
                except ServiceError as failure:
                    error = failure.reason
                except Exception as failure:  # one file's fault must not stop the others
                    error = f"transcription failed ({type(failure).__name__}: {failure})"
            transcripts.append(transcript)
            errors.append(error)
        return {
            "path": batch["path"],
            "duration": batch["duration"],
            "transcript": _objects(transcripts),
            "error": _objects(errors),
        }


def _objects(values: list[Any]) -> np.ndarray:
    """A column of Python objects (Ray Data pickles them), one a row."""
    column = np.empty(len(values), dtype=object)
    column[:] = values
    return column


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


def connect(address: str | None) -> None:
    """Join the cluster at `address` (or RAY_ADDRESS, as `ray job submit` sets it), else start
    a Ray of this host's cores, plus the one CPU the decode tasks share."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        # "local": never join a cluster another user started on this host.
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        ray.init(address="local", num_cpus=cores + 1, include_dashboard=False, log_to_driver=False)


def transcripts(
    files: list[MediaFile], model: ModelInfo, pool: ActorPool, settings: BatchSettings, diarization_path: str | None = None
) -> Iterator[dict[str, Any]]:
    """The Ray Data pipeline over `files`: rows of {path, duration, transcript, error}, in the
    order they finish."""
    import ray.data
    from ray.data import ActorPoolStrategy, DataContext
    from ray.util.debug import log_once

    context = DataContext.get_current()
    context.enable_progress_bars = False  # the batch shows its own, in files and audio hours
    context.print_on_execution_start = False
    log_once("ray_data_progress_manager_disabled")  # Ray Data would say how to turn its bars on
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    items = [{"path": str(file.path), "language": file.language or ""} for file in files]
    workers, cpu_threads = thread_budget(pool.device, pool.cpus)  # what the actor's num_cpus gives it
    engine = {
        "device": pool.device,
        "compute_type": settings.compute_type,
        "workers": workers,
        "cpu_threads": cpu_threads,
        "beam_size": settings.beam_size,
    }
    dataset = (
        ray.data.from_items(items, override_num_blocks=len(items))  # a file a block: a decode task each
        .map(decode_media, num_cpus=DECODE_CPUS)
        .map_batches(
            Transcribe,
            fn_constructor_kwargs={"model": model, "engine": engine, "diarization_path": diarization_path},
            batch_size=1,
            batch_format="numpy",
            num_cpus=pool.cpus,
            num_gpus=pool.gpus,
            # Two files in flight an actor: the next is there when one ends, and at the end of
            # the batch no actor holds a queue while another idles.
            compute=ActorPoolStrategy(size=pool.actors, max_tasks_in_flight_per_actor=2),
        )
    )
    return dataset.iter_rows()


class Report:
    """What a run did, kept as it happens: the summary, and each failure appended at once to
    the failures file, so that a batch that breaks off still lists its failures so far."""

    def __init__(self, output: Path, files: int) -> None:
        self.summary = BatchSummary(files=files)
        self.failures_file = output / FAILURES_FILE
        self.failures_file.unlink(missing_ok=True)  # the last run's: its files are tried again

    def failed(self, path: Path, reason: str) -> None:
        failure = Failure(str(path), reason)
        self.summary.failures.append(failure)
        with open(self.failures_file, "a", encoding="utf-8") as failures:
            failures.write(failure.to_json() + "\n")

    def transcribed(self, audio_seconds: float) -> None:
        self.summary.transcribed += 1
        self.summary.audio_seconds += audio_seconds

    def progress(self) -> str:
        return f"{self.summary.audio_seconds / 3600:.3f} h audio, {len(self.summary.failures)} failed"


def run_batch(settings: BatchSettings, *, address: str | None = None) -> BatchSummary:
    """Transcribe what is left to do of `settings.media` into `settings.output`; BatchError
    before anything is written when the batch cannot start."""
    # Here, not at the top: Ray Serve, which it imports, would slow every decode worker's start.
    from serve_app.pipeline import check_model_fits

    started = time.monotonic()
    if settings.job_format not in JOB_FORMATS:
        raise BatchError(f"format must be one of {', '.join(JOB_FORMATS)}, not {settings.job_format!r}")
    output = Path(os.path.abspath(settings.output))
    files = media_files(settings.media, settings.extensions)
    todo = [
        replace(file, language=file.language or settings.language)
        for file in files
        if not is_done(file, output, settings.job_format)
    ]
    model = find_model(settings.model_dir, settings.model) if todo else None
    if model is not None:
        try:
            check_model_fits(model, DecodeOptions(language=settings.language))
        except ServiceError as error:
            raise BatchError(error.reason) from None
    diarization = (
        find_model(settings.model_dir, settings.diarization_model, kind="diarization") if todo and settings.diarize else None
    )
    runnable, refused = [], []
    for file in todo:
        try:
            check_model_fits(model, DecodeOptions(language=file.language))  # a manifest's language
            runnable.append(file)
        except ServiceError as error:
            refused.append((file, error.reason))
    pool = None
    if runnable:
        import ray

        connect(address)
        pool = plan_pool(
            ray.cluster_resources(), actors=settings.actors, cpus=settings.cpus_per_actor, gpus=settings.gpus_per_actor
        )
        pool = replace(pool, actors=min(pool.actors, len(runnable)))  # no actor without a file

    output.mkdir(parents=True, exist_ok=True)
    report = Report(output, len(files))
    report.summary.skipped = len(files) - len(todo)
    for file, reason in refused:
        report.failed(file.path, reason)
    if pool is not None:
        started = time.monotonic()  # the pipeline's time: Ray's own start left out
        _transcribe(runnable, model, pool, settings, output, report, diarization.path if diarization else None)
    report.summary.wall_seconds = time.monotonic() - started
    return report.summary


def _transcribe(
    files: list[MediaFile],
    model: ModelInfo,
    pool: ActorPool,
    settings: BatchSettings,
    output: Path,
    report: Report,
    diarization_path: str | None,
) -> None:
    """Run the pipeline, and write each file's outputs as its transcript arrives."""
    from tqdm import tqdm

    by_path = {str(file.path): file for file in files}
    with tqdm(total=len(files), unit="file", desc="transcribing", disable=not settings.progress, file=sys.stderr) as bar:
        for row in transcripts(files, model, pool, settings, diarization_path):
            file = by_path[row["path"]]
            transcript: Transcript | None = row["transcript"]
            if row["error"] or transcript is None:
                report.failed(file.path, row["error"] or "no transcript came back")
            else:
                folder = output / file.folder
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                    write_outputs(transcript, media_path=file.name, output_dir=folder, job_format=settings.job_format)
                    report.transcribed(float(row["duration"]))
                except OSError as error:
                    report.failed(file.path, f"cannot make the output folder {folder} ({error.strerror or error})")
                except ServiceError as error:
                    report.failed(file.path, error.reason)
            bar.update(1)
            bar.set_postfix_str(report.progress(), refresh=False)


# -- the command -----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    defaults = AppSettings()
    parser = argparse.ArgumentParser(
        prog="python -m serve_app.batch",
        description="Transcribe a folder or a manifest of media files on a Ray cluster, into the job API's output files.",
        epilog=f"Exit status: 0 all transcribed, {EXIT_FAILED_FILES} some files failed (see OUTPUT/{FAILURES_FILE}), "
        f"{EXIT_USAGE} the batch cannot start, {EXIT_BROKEN} it broke off. A rerun skips files whose outputs are all present.",
    )
    parser.add_argument(
        "media",
        type=Path,
        help="a folder (searched recursively), a media file, or a manifest: .csv or .jsonl with path (and language), or one path a line",
    )
    parser.add_argument("output", type=Path, help="the output folder; the inputs' sub-folders are kept in it")
    parser.add_argument(
        "--model",
        default=defaults.default_model,
        help=f"id or alias of a model in the model folder (default {defaults.default_model})",
    )
    parser.add_argument(
        "--model-dir", type=Path, default=defaults.model_dir, help="the model folder (default: the service's, %(default)s)"
    )
    parser.add_argument(
        "--language", default=None, help="language code of the speech (default: detected); a manifest's language column wins"
    )
    parser.add_argument(
        "--format",
        dest="job_format",
        default="txt",
        choices=JOB_FORMATS,
        help="output files, as the job API's format (default txt)",
    )
    parser.add_argument(
        "--extensions", default=None, help="comma-separated extensions a folder is searched for (default: common audio and video)"
    )
    parser.add_argument("--actors", type=int, default=None, help="transcription actors (default: as many as the cluster holds)")
    parser.add_argument(
        "--cpus-per-actor", type=int, default=1, help="CPUs of each actor, and the threads it transcribes with (default 1)"
    )
    parser.add_argument(
        "--gpus-per-actor", type=float, default=None, help="GPUs of each actor (default 1 on a cluster with GPUs, else 0)"
    )
    parser.add_argument(
        "--compute-type",
        default=defaults.compute_type,
        help="CTranslate2 compute type (default auto: int8 on CPU, float16 on GPU)",
    )
    parser.add_argument("--beam-size", type=int, default=defaults.beam_size)
    parser.add_argument("--diarize", action="store_true", help="label each segment with its speaker (pyannote), in every output")
    parser.add_argument(
        "--diarization-model",
        default=None,
        help=f"the diarization model, in the model folder (default {defaults.diarization_model}); implies --diarize",
    )
    parser.add_argument("--address", default=None, help="the Ray cluster to join (default: RAY_ADDRESS, else a new local Ray)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return parser


def _extensions(value: str | None) -> tuple[str, ...]:
    if value is None:
        return tuple(MEDIA_EXTENSIONS)
    chosen = tuple(f".{part.strip().lstrip('.').lower()}" for part in value.split(",") if part.strip())
    if not chosen:
        raise BatchError("--extensions names no extension; give them comma-separated, such as mp3,wav")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if (args.actors is not None and args.actors < 1) or args.cpus_per_actor < 1:
        parser.error("--actors and --cpus-per-actor must be at least 1")
    try:
        settings = BatchSettings(
            media=args.media,
            output=args.output,
            model=args.model,
            model_dir=args.model_dir.expanduser(),
            language=_language(args.language, "--language"),
            job_format=args.job_format,
            extensions=_extensions(args.extensions),
            actors=args.actors,
            cpus_per_actor=args.cpus_per_actor,
            gpus_per_actor=args.gpus_per_actor,
            compute_type=args.compute_type,
            beam_size=args.beam_size,
            diarize=args.diarize or args.diarization_model is not None,
            diarization_model=args.diarization_model or AppSettings().diarization_model,
            progress=args.progress,
        )
        summary = run_batch(settings, address=args.address)
    except BatchError as error:
        print(f"batch: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(summary.line())
    if summary.failures:
        print(f"failed (listed in {Path(os.path.abspath(settings.output)) / FAILURES_FILE}):")
        for failure in summary.failures:
            print(f"  {failure.path}: {failure.reason}")
        return EXIT_FAILED_FILES
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
