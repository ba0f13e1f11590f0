"""Time to the first streamed segment, on a clip of a few minutes: the service against the engine.

In-process: faster-whisper's lazy generator, from the call until its first segment (and its
last). Service: `POST /v1/audio/transcriptions?stream=true`, from sending the request until the
first `segment` event arrives (and `ok`). Same model (tiny.en, int8, beam 5, one thread),
alternating rounds, medians; the ratios are against the engine measured in the same run.

    .venv/bin/python benchmarks/first_segment.py [--rounds 3] [--minutes 3]
"""

from __future__ import annotations

import os

# What Ray gives a replica with num_cpus: 1; the baseline gets the same, so threads match.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import av
import httpx
from faster_whisper import WhisperModel
from httpx_sse import EventSource

from corpus import PASSAGES
from serve_app.local import LocalService


def long_clip(folder: Path, minutes: float) -> Path:
    words_per_minute = 150
    text = " ".join(PASSAGES)
    repeats = max(1, round(minutes * words_per_minute / len(text.split())))
    clip = folder / "long.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", str(words_per_minute), "-w", str(clip), " ".join([text] * repeats)], check=True)
    return clip


def engine_times(model: WhisperModel, clip: Path) -> tuple[float, float]:
    started = time.perf_counter()
    segments, _ = model.transcribe(str(clip), beam_size=5)
    first = None
    for _ in segments:
        first = first or time.perf_counter() - started
    return first, time.perf_counter() - started


def service_times(url: str, clip: Path) -> tuple[float, float]:
    started = time.perf_counter()
    first = None
    with httpx.Client(base_url=url, timeout=600) as client, open(clip, "rb") as media, client.stream(
        "POST", "/v1/audio/transcriptions", params={"stream": "true"}, files={"file": media}, data={"model": "tiny.en"}
    ) as response:
        for event in EventSource(response).iter_sse():
            if event.event == "segment" and first is None:
                first = time.perf_counter() - started
    return first, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        clip = long_clip(Path(scratch), args.minutes)
        with av.open(str(clip)) as container:
            seconds = container.duration / av.time_base
        service = LocalService(model_dir=Path(scratch) / "models")
        service.start()
        try:
            model = WhisperModel(str(service.model_dir / "tiny.en"), device="cpu", compute_type="int8", cpu_threads=1)
            engine, served = [], []
            service_times(service.url, clip)  # warm up the replica's model
            for _ in range(args.rounds):
                engine.append(engine_times(model, clip))
                served.append(service_times(service.url, clip))
        finally:
            service.stop()

    engine_first, engine_end = (statistics.median(t[i] for t in engine) for i in (0, 1))
    served_first, served_end = (statistics.median(t[i] for t in served) for i in (0, 1))
    print(f"clip: {seconds:.0f} s of speech; {args.rounds} rounds, medians")
    print(f"{'path':<28}{'first segment s':>17}{'whole file s':>14}{'first / whole':>15}{'first vs engine':>17}")
    print(f"{'engine in-process':<28}{engine_first:>17.3f}{engine_end:>14.2f}{engine_first / engine_end:>15.2f}{1.0:>17.2f}")
    print(f"{'service, SSE over HTTP':<28}{served_first:>17.3f}{served_end:>14.2f}{served_first / served_end:>15.2f}"
          f"{served_first / engine_first:>17.2f}")
    print(f"service first segment - engine first segment: {1000 * (served_first - engine_first):+.0f} ms")


if __name__ == "__main__":
    main()
