"""Transcription speed: faster-whisper in-process (the baseline) against the service over HTTP.

Both decode the same clips one after another with tiny.en, int8, beam 5 and one CPU thread
(what one Transcriber replica of config.cpu.yaml gets), in alternating rounds so that the
noise of a shared machine falls on both. Prints audio seconds per wall second, median of the
rounds, and the service's figure as a ratio to the baseline measured in the same run.

    .venv/bin/python benchmarks/transcription.py [--rounds 3]
"""

from __future__ import annotations

import os

# What Ray gives a replica with num_cpus: 1; the baseline gets the same, so threads match.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import tempfile
import time
from pathlib import Path

import httpx
from faster_whisper import WhisperModel

from corpus import build, in_process, print_speeds, seconds_of_audio
from serve_app.local import LocalService


def through_service(url: str, clips: list[Path]) -> float:
    started = time.perf_counter()
    with httpx.Client(base_url=url, timeout=600) as client:
        for clip in clips:
            with open(clip, "rb") as media:
                response = client.post("/v1/audio/transcriptions", files={"file": media}, data={"model": "tiny.en"})
            response.raise_for_status()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds

    with tempfile.TemporaryDirectory() as scratch:
        clips = build(Path(scratch) / "corpus")
        audio_seconds = seconds_of_audio(clips)
        service = LocalService(model_dir=Path(scratch) / "models")
        service.start()
        try:
            model = WhisperModel(str(service.model_dir / "tiny.en"), device="cpu", compute_type="int8", cpu_threads=1)
            in_process(model, clips[:1]), through_service(service.url, clips[:1])  # warm both up
            baseline, served = [], []
            for _ in range(rounds):
                baseline.append(in_process(model, clips))
                served.append(through_service(service.url, clips))
        finally:
            service.stop()

    print(f"corpus: {len(clips)} clips, {audio_seconds:.1f} s of audio; {rounds} rounds, medians")
    print_speeds(audio_seconds, [("faster-whisper in-process", baseline), ("service over HTTP, one at a time", served)])


if __name__ == "__main__":
    main()
