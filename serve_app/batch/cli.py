"""The batch's command line: `python -m serve_app.batch MEDIA OUTPUT [options]`, and its exit
status (0 all transcribed, 3 some files failed, 2 the batch cannot start, 1 it broke off)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from serve_app.batch.inputs import MEDIA_EXTENSIONS, BatchError, _language
from serve_app.batch.plan import BATCH_FORMATS, BatchSettings
from serve_app.batch.report import FAILURES_FILE
from serve_app.batch.run import run_batch
from serve_app.settings import AppSettings

__all__ = ["EXIT_BROKEN", "EXIT_FAILED_FILES", "EXIT_OK", "EXIT_USAGE", "main"]

EXIT_OK, EXIT_BROKEN, EXIT_USAGE, EXIT_FAILED_FILES = 0, 1, 2, 3


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
        choices=BATCH_FORMATS,
        help="output files, as the job API's format (default txt); with --diarize, rttm too (all writes it)",
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
