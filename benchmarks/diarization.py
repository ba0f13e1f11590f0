"""Diarization speed and accuracy on the pyannote sample call, in-process, one thread.

Prints the embedded pipeline's speed (audio seconds per wall second) beside faster-whisper's
tiny.en transcription of the same file measured in the same run (the baseline, 1.00: what a
/v1/audio/diarize request runs beside), medians of alternating rounds, and the diarization
error rate against sample.rttm (pyannote.metrics, collar 0, overlap scored).

    .venv/bin/python benchmarks/diarization.py [--rounds 5]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from corpus import SAMPLE_WAV
from faster_whisper import WhisperModel
from pyannote.core import Annotation, Segment, Timeline
from pyannote.metrics.diarization import DiarizationErrorRate

from serve_app.diarization.pipeline import diarize, load_pipeline
from serve_app.engine.audio import SAMPLE_RATE, decode_audio
from serve_app.models.catalogue import ModelCatalogue
from serve_app.models.embedded import EMBEDDED_MODELS


def reference() -> Annotation:
    annotation = Annotation()
    for line in SAMPLE_WAV.with_suffix(".rttm").read_text().splitlines():
        fields = line.split()
        start, duration, speaker = float(fields[3]), float(fields[4]), fields[7]
        annotation[Segment(start, start + duration)] = speaker
    return annotation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    torch.set_num_threads(1)

    audio = decode_audio(open(SAMPLE_WAV, "rb"))
    seconds = audio.size / SAMPLE_RATE
    pipeline = load_pipeline()
    with tempfile.TemporaryDirectory() as scratch:
        catalogue = ModelCatalogue(Path(scratch))
        catalogue.seed([model for model in EMBEDDED_MODELS if model.id == "tiny.en"])
        whisper = WhisperModel(catalogue.find("tiny.en").path, device="cpu", compute_type="int8", cpu_threads=1)

        def transcribe() -> None:
            segments, _ = whisper.transcribe(audio, beam_size=5)
            list(segments)

        transcribe(), diarize(pipeline, audio)  # warm up
        base, diarized, turns = [], [], []
        for _ in range(rounds):
            started = time.perf_counter()
            transcribe()
            base.append(time.perf_counter() - started)
            started = time.perf_counter()
            turns = diarize(pipeline, audio)
            diarized.append(time.perf_counter() - started)

    hypothesis = Annotation()
    for turn in turns:
        hypothesis[Segment(turn.start, turn.end)] = turn.speaker
    der = DiarizationErrorRate(collar=0.0, skip_overlap=False)(reference(), hypothesis, uem=Timeline([Segment(0, seconds)]))
    base_speed, diarize_speed = seconds / statistics.median(base), seconds / statistics.median(diarized)
    print(f"sample call: {seconds:.1f} s, {rounds} rounds, medians, one thread")
    print(f"{'path':<40}{'wall s':>8}{'audio s / wall s':>19}{'ratio':>8}")
    print(f"{'faster-whisper tiny.en (baseline)':<40}{statistics.median(base):>8.2f}{base_speed:>19.2f}{1.0:>8.2f}")
    print(
        f"{'diarization, pyannote-campplus':<40}{statistics.median(diarized):>8.2f}{diarize_speed:>19.2f}{diarize_speed / base_speed:>8.2f}"
    )
    print(f"speakers found: {len({t.speaker for t in turns})} (reference: {len(reference().labels())}); DER {der:.3f}")


if __name__ == "__main__":
    main()
