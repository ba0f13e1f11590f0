"""Diarization speed and accuracy on the pyannote sample call, in-process: the embedded pipeline
against its old configuration.

Runs, in one process, in alternating rounds (each round in another order):

1. the embedded pipeline as it was (the baseline, 1.00): every (chunk, speaker) pair embedded,
   pyannote's own loop (`embedding_stride` None);
2. the embedded pipeline as it is (`--stride`, default EMBEDDING_STRIDE: every n-th chunk
   embedded, serve_app/diarization/strided.py);
3. faster-whisper's tiny.en transcription of the same file (int8, beam 5, one thread), for
   scale: what a /v1/audio/diarize request runs beside. In a process of its own
   (engine_process.py), as the Transcriber is: after CTranslate2 has run in a process, torch
   there ran twice as slow with 2 threads (its memory's state; the replicas never share one).

Prints medians over the rounds: speed (audio seconds per wall second, "x real time") as ratios
to the baseline, the time of each step of the pipeline (timed with pyannote's hook), the
number of CAM++ passes, and each pipeline's diarization error rate against sample.rttm
(pyannote.metrics, collar 0, overlap scored) with its parts: missed speech, false alarm,
speaker confusion.

    .venv/bin/python benchmarks/diarization.py [--rounds 7] [--threads 1] [--stride 3]
"""

from __future__ import annotations

import os

os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")

import argparse
import ctypes
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from corpus import SAMPLE_WAV
from pyannote.core import Annotation, Segment, Timeline
from pyannote.metrics.diarization import DiarizationErrorRate

from serve_app.diarization.pipeline import EMBEDDING_STRIDE, diarize, load_pipeline
from serve_app.diarization.speakers import SpeakerTurn
from serve_app.engine.audio import SAMPLE_RATE, decode_audio
from serve_app.models.catalogue import ModelCatalogue
from serve_app.models.embedded import EMBEDDED_MODELS

# pyannote's hook is called once at the end of each step (and with `completed=` for progress):
# a step's time runs from the previous step's end.
STEPS = {
    "segmentation": "segmentation",
    "speaker_counting": "speaker counting",
    "embeddings": "embeddings",
    "discrete_diarization": "clustering, reconstruction",
}
OTHER = "annotations, labels"
DER_PARTS = {"missed detection": "missed speech", "false alarm": "false alarm", "confusion": "speaker confusion"}


def reference() -> Annotation:
    annotation = Annotation()
    for line in SAMPLE_WAV.with_suffix(".rttm").read_text().splitlines():
        fields = line.split()
        start, duration, speaker = float(fields[3]), float(fields[4]), fields[7]
        annotation[Segment(start, start + duration)] = speaker
    return annotation


class Diarization:
    """One configuration of the embedded pipeline, and its measurements over the rounds."""

    def __init__(self, label: str, embedding_stride: int | None) -> None:
        self.label = label
        self.pipeline = load_pipeline()
        self.pipeline.embedding_stride = embedding_stride
        self.passes = 0
        self.pipeline._embedding.model_.campplus.register_forward_hook(self._count)
        self.walls: list[float] = []
        self.steps: dict[str, list[float]] = {name: [] for name in [*STEPS.values(), OTHER]}
        self.turns: list[SpeakerTurn] = []

    def _count(self, *_: object) -> None:
        self.passes += 1

    def run(self, audio: np.ndarray) -> None:
        ends: dict[str, float] = {}

        def hook(step: str, artifact: object, file: object = None, total: int | None = None, completed: int | None = None):
            if completed is None and step in STEPS:
                ends[step] = time.perf_counter()

        self.passes = 0
        started = time.perf_counter()
        self.turns = diarize(self.pipeline, audio, hook=hook)
        self.walls.append(time.perf_counter() - started)
        previous = started
        for step, name in STEPS.items():
            self.steps[name].append(ends[step] - previous)
            previous = ends[step]
        self.steps[OTHER].append(started + self.walls[-1] - previous)

    def wall(self) -> float:
        return statistics.median(self.walls)

    def der(self, seconds: float) -> dict[str, float]:
        hypothesis = Annotation()
        for turn in self.turns:
            hypothesis[Segment(turn.start, turn.end)] = turn.speaker
        metric = DiarizationErrorRate(collar=0.0, skip_overlap=False)
        parts = metric(reference(), hypothesis, uem=Timeline([Segment(0, seconds)]), detailed=True)
        return {name: parts[key] / parts["total"] for key, name in DER_PARTS.items()} | {"DER": parts["diarization error rate"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch's threads (the Diarizer's: 1 in config.cpu.yaml)")
    parser.add_argument("--stride", type=int, default=EMBEDDING_STRIDE, help="embed every n-th chunk")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ctypes.CDLL("libc.so.6").mallopt(-8, 2)  # M_ARENA_MAX: the Diarizer's MALLOC_ARENA_MAX (config.yaml)

    audio = decode_audio(open(SAMPLE_WAV, "rb"))
    seconds = audio.size / SAMPLE_RATE
    before = Diarization("pyannote-campplus before (baseline)", None)
    after = Diarization(f"pyannote-campplus after (stride {args.stride})", args.stride)
    with tempfile.TemporaryDirectory() as scratch:
        catalogue = ModelCatalogue(Path(scratch))
        catalogue.seed([model for model in EMBEDDED_MODELS if model.id == "tiny.en"])
        whisper_walls: list[float] = []
        engine = [sys.executable, str(Path(__file__).parent / "engine_process.py"), catalogue.find("tiny.en").path]

        def transcribe() -> None:
            process = subprocess.Popen(
                [*engine, "sequential", str(SAMPLE_WAV)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            assert process.stdin is not None and process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
            process.stdin.write("go\n")
            process.stdin.flush()
            whisper_walls.append(json.loads(process.stdout.readline())["seconds"])
            process.wait()

        paths: list[Callable[[], None]] = [lambda: before.run(audio), lambda: after.run(audio), transcribe]
        for path in paths:  # warm up
            path()
        for run in (before, after):
            run.walls.clear()
            for times in run.steps.values():
                times.clear()
        whisper_walls.clear()
        for round_ in range(args.rounds):
            for index in range(len(paths)):
                paths[(index + round_) % len(paths)]()

    base = before.wall()
    print(f"sample call: {seconds:.1f} s; {args.threads} threads; {args.rounds} rounds, alternating; medians")
    print(f"{'path':<53}{'wall s':>8}{'x real time':>13}{'speed ratio':>13}")
    for label, wall in (
        (before.label, base),
        (after.label, after.wall()),
        ("faster-whisper tiny.en (int8, beam 5), own process", statistics.median(whisper_walls)),
    ):
        print(f"{label:<53}{wall:>8.2f}{seconds / wall:>13.1f}{base / wall:>13.2f}")

    print(f"\n{'step, wall s (medians)':<53}{'before':>8}{'after':>13}{'after/before':>13}")
    for name in before.steps:
        old, new = statistics.median(before.steps[name]), statistics.median(after.steps[name])
        print(f"{name:<53}{old:>8.3f}{new:>13.3f}{new / old if old else float('nan'):>13.2f}")
    print(f"{'CAM++ passes':<53}{before.passes:>8}{after.passes:>13}{after.passes / before.passes:>13.2f}")

    old_der, new_der = before.der(seconds), after.der(seconds)
    print(f"\n{'against sample.rttm (collar 0, overlap scored)':<53}{'before':>8}{'after':>13}{'after-before':>13}")
    for name in old_der:
        print(f"{name:<53}{old_der[name]:>8.4f}{new_der[name]:>13.4f}{new_der[name] - old_der[name]:>+13.4f}")
    speakers = len(reference().labels())
    found = (len({turn.speaker for turn in run.turns}) for run in (before, after))
    print(f"{'speakers found (reference: ' + str(speakers) + ')':<53}{next(found):>8}{next(found):>13}")


if __name__ == "__main__":
    main()
