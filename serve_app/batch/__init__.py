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

The modules: inputs.py (finding the files, manifests, languages, the outputs' names), plan.py
(settings, resuming, the model, the actors that fit), pipeline.py (the Ray Data graph and the
actor), report.py (the summary, progress and failures.jsonl), run.py (a run, start to end),
cli.py (arguments and exit status).
"""

from serve_app.batch.cli import EXIT_FAILED_FILES, main
from serve_app.batch.inputs import MEDIA_EXTENSIONS, BatchError, MediaFile, find_media, media_files, plan_files, read_manifest
from serve_app.batch.pipeline import connect
from serve_app.batch.plan import DECODE_CPUS, BatchSettings, find_model, plan_pool
from serve_app.batch.report import BatchSummary, Failure
from serve_app.batch.run import run_batch

__all__ = [
    "DECODE_CPUS",
    "EXIT_FAILED_FILES",
    "MEDIA_EXTENSIONS",
    "BatchError",
    "BatchSettings",
    "BatchSummary",
    "Failure",
    "MediaFile",
    "connect",
    "find_media",
    "find_model",
    "main",
    "media_files",
    "plan_files",
    "plan_pool",
    "read_manifest",
    "run_batch",
]
