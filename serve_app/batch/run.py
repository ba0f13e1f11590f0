"""A batch run, start to end: plan it, fit the actor pool to the cluster, run the pipeline, and
write each file's outputs as its transcript arrives."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from serve_app.batch.inputs import MediaFile
from serve_app.batch.pipeline import connect, transcripts
from serve_app.batch.plan import ActorPool, BatchSettings, plan_batch, plan_pool
from serve_app.batch.report import BatchSummary, Report, progress_bar
from serve_app.errors import ServiceError
from serve_app.jobs.outputs import write_outputs
from serve_app.models.catalogue import ModelInfo
from serve_app.transcript import Transcript

__all__ = ["run_batch"]


def run_batch(settings: BatchSettings, *, address: str | None = None) -> BatchSummary:
    """Transcribe what is left to do of `settings.media` into `settings.output`; BatchError
    before anything is written when the batch cannot start."""
    started = time.monotonic()
    plan = plan_batch(settings)
    pool = None
    if plan.runnable:
        import ray

        connect(address)
        pool = plan_pool(
            ray.cluster_resources(), actors=settings.actors, cpus=settings.cpus_per_actor, gpus=settings.gpus_per_actor
        )
        pool = replace(pool, actors=min(pool.actors, len(plan.runnable)))  # no actor without a file

    plan.output.mkdir(parents=True, exist_ok=True)
    report = Report(plan.output, len(plan.files))
    report.summary.skipped = plan.skipped
    for file, reason in plan.refused:
        report.failed(file.path, reason)
    if pool is not None:
        started = time.monotonic()  # the pipeline's time: Ray's own start left out
        diarization_path = plan.diarization.path if plan.diarization else None
        assert plan.model is not None  # a plan with runnable files has its model
        _transcribe(plan.runnable, plan.model, pool, settings, plan.output, report, diarization_path)
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
    by_path = {str(file.path): file for file in files}
    with progress_bar(len(files), enabled=settings.progress) as bar:
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
