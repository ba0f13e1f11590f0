"""Batch throughput: the Ray Data pipeline (serve_app.batch) against faster-whisper in-process.

Both transcribe the same files, several copies of the corpus (the sample call and espeak-ng
English), with tiny.en, int8, beam 5: the baseline one file after another with one CPU thread,
the batch with its default pool (on a 2-core host: two actors of one CPU and one thread each,
decode tasks beside them) into a fresh output folder each round. The batch's time counts what
a run costs once Ray is up: starting its actors, loading the model in each, decoding, and
writing the outputs. That start (some 10 s on a 2-core host before the first file is done) is
why the corpus is copied: a longer batch spreads it thinner, as real batches of hours do.
Alternating rounds so that the noise of a shared machine falls on both;
audio seconds per wall second, median of the rounds, and the batch's figure as a ratio to the
baseline measured in the same run.

    .venv/bin/python benchmarks/batch.py [--rounds 3] [--copies 10]
"""

from __future__ import annotations

import os

# What Ray gives an actor with num_cpus: 1; the baseline gets the same, so threads match.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import ray
from corpus import build, in_process, print_speeds, seconds_of_audio
from faster_whisper import WhisperModel

from serve_app.batch import BatchSettings, connect, find_model, plan_pool, run_batch


def corpus_copies(folder: Path, copies: int) -> list[Path]:
    """`copies` of the corpus, each in a sub-folder of `folder` (as a batch's input folder)."""
    clips = build(folder / "corpus")
    media = folder / "media"
    files = []
    for copy in range(copies):
        (media / f"copy-{copy}").mkdir(parents=True)
        for clip in clips:
            files.append(Path(shutil.copy(clip, media / f"copy-{copy}" / clip.name)))
    return files


def batch(settings: BatchSettings) -> float:
    started = time.perf_counter()
    summary = run_batch(settings)
    elapsed = time.perf_counter() - started
    if summary.failures or summary.transcribed != summary.files:
        raise SystemExit(f"the batch did not transcribe every file: {summary.line()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--copies", type=int, default=10, help="copies of the corpus: enough work to spread over the actors")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        files = corpus_copies(scratch, args.copies)
        audio_seconds = seconds_of_audio(files)
        model_info = find_model(scratch / "models", "tiny.en")  # writes the embedded models in
        model = WhisperModel(model_info.path, device="cpu", compute_type="int8", cpu_threads=1)
        connect(None)  # a local Ray, as `python -m serve_app.batch` starts it; not timed
        try:
            actors = plan_pool(ray.cluster_resources(), actors=None, cpus=1, gpus=None).actors
            settings = BatchSettings(
                media=scratch / "media", output=scratch / "out", model="tiny.en", model_dir=scratch / "models", progress=False
            )
            in_process(model, files[:1])  # warm the baseline up; the batch starts cold each round, as it runs
            baseline, batched = [], []
            for round_number in range(args.rounds):
                baseline.append(in_process(model, files))
                shutil.rmtree(settings.output, ignore_errors=True)
                batched.append(batch(settings))
                print(f"round {round_number + 1}: in-process {baseline[-1]:.1f} s, batch {batched[-1]:.1f} s", flush=True)
        finally:
            ray.shutdown()

    print(
        f"corpus: {len(files)} files ({args.copies} copies of {len(files) // args.copies} clips), {audio_seconds:.1f} s of audio; {args.rounds} rounds, medians"
    )
    print_speeds(
        audio_seconds,
        [("faster-whisper in-process, one file at a time", baseline), (f"batch on Ray Data, {actors} actors x 1 CPU", batched)],
    )


if __name__ == "__main__":
    main()
