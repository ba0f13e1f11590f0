"""A long file diarized whole and in pieces (serve_app/diarization/pieces.py), in-process, in one run.

The file is the pyannote sample call over and over with silences between (tests/media.py
`long_recording`), whose turns are known (`long_recording_turns`). The embedded pipeline on one
torch thread (the Diarizer's in config.cpu.yaml) diarizes it twice: whole, as pyannote would
(the baseline), and in pieces of PIECE_S, as the Diarizer does past LONG_S. Printed for each:
the wall time, when the first turns were known, the speakers found, and the diarization error
rate (pyannote.metrics, collar 0, overlap scored) of the turns and of the exclusive turns (what
words are labelled with) against the known turns.

    .venv/bin/python benchmarks/long_diarization.py [--minutes 30]
"""

from __future__ import annotations

import os

os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")

import argparse
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import torch
from pyannote.core import Annotation, Segment
from pyannote.metrics.diarization import DiarizationErrorRate

from serve_app.diarization.pieces import PIECE_S, cuts, joined
from serve_app.diarization.pipeline import diarization, diarized_pieces, load_pipeline
from serve_app.diarization.speakers import Diarization, SpeakerTurn
from serve_app.engine.audio import SAMPLE_RATE, decode_audio

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from media import long_recording, long_recording_turns


def annotation(turns: Iterable[SpeakerTurn | tuple[float, float, str]]) -> Annotation:
    found = Annotation()
    for start, end, speaker in ((t.start, t.end, t.speaker) if isinstance(t, SpeakerTurn) else t for t in turns):
        found[Segment(start, end)] = speaker
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30, help="length of the file (default 30)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seconds = args.minutes * 60
    with tempfile.TemporaryDirectory() as scratch, long_recording(Path(scratch) / "long.ogg", seconds).open("rb") as media:
        audio = decode_audio(media)
    reference = annotation(long_recording_turns(seconds))
    pipeline = load_pipeline()
    diarization(pipeline, audio[: 30 * SAMPLE_RATE])  # warm-up

    runs: dict[str, tuple[float, float, Diarization]] = {}
    started = time.perf_counter()
    whole = diarization(pipeline, audio)
    wall = time.perf_counter() - started
    runs["whole (baseline)"] = (wall, wall, whole)  # its turns all come at the end

    started = time.perf_counter()
    pieces, first = [], 0.0
    for piece in diarized_pieces(pipeline, audio):
        pieces.append(piece)
        first = first or time.perf_counter() - started
    runs[f"in pieces of {PIECE_S:g} s"] = (time.perf_counter() - started, first, joined(pieces))

    bounds = cuts(audio, SAMPLE_RATE)
    print(
        f"{args.minutes:g} minutes ({len(bounds) - 1} pieces, cut at {', '.join(f'{b / SAMPLE_RATE:.1f}' for b in bounds[1:-1])} s)"
    )
    baseline = runs["whole (baseline)"][0]
    print(f"{'diarized':<22}{'wall s':>8}{'vs whole':>10}{'first turns s':>15}{'speakers':>10}{'DER':>8}{'DER excl.':>11}")
    for name, (wall, first_s, found) in runs.items():
        der = DiarizationErrorRate(collar=0.0)(reference, annotation(found.turns))
        exclusive = DiarizationErrorRate(collar=0.0)(reference, annotation(found.exclusive))
        speakers = len({turn.speaker for turn in found.turns})
        print(f"{name:<22}{wall:>8.1f}{wall / baseline:>10.2f}{first_s:>15.1f}{speakers:>10}{der:>8.3f}{exclusive:>11.3f}")


if __name__ == "__main__":
    main()
