"""A long file diarized through the service, streamed: the Diarizer sends it in pieces
(serve_app/diarization/pieces.py), and a speaker keeps one name from piece to piece."""

from __future__ import annotations

import json

import pytest
from conftest import LONG_MINUTES, LongDiarization
from media import long_recording_turns

from serve_app.diarization.pieces import PIECE_S

pytestmark = pytest.mark.slow


def labels_by_speaker(segments: list[dict], turns: list[tuple[float, float, str]]) -> dict[str, dict[str, float]]:
    """For each speaker of the reference, the seconds each label given to the segments covers
    of their turns."""
    covered: dict[str, dict[str, float]] = {}
    for start, end, speaker in turns:
        for segment in segments:
            overlap = min(end, segment["end"]) - max(start, segment["start"])
            if overlap > 0:
                labels = covered.setdefault(speaker, {})
                labels[segment["speaker"]] = labels.get(segment["speaker"], 0.0) + overlap
    return covered


@pytest.mark.timeout(3600)  # 20 minutes diarize in about 2 on 2 idle cores; far longer on busy ones
def test_a_long_file_streams_its_speakers_under_the_same_names_in_every_piece(long_diarization: LongDiarization) -> None:
    events = long_diarization.events
    assert events[-1][0] == "ok", events[-1]
    task = next(json.loads(data) for name, data in events if name == "task")
    assert task["duration"] == pytest.approx(LONG_MINUTES * 60, abs=1)
    segments = [json.loads(data) for name, data in events if name == "segment"]
    assert segments[-1]["end"] > LONG_MINUTES * 60 - 60  # words to the end
    assert all(segment["speaker"] for segment in segments)

    turns = long_recording_turns(LONG_MINUTES * 60)
    first = labels_by_speaker(segments, [turn for turn in turns if turn[1] < PIECE_S - 30])
    last = labels_by_speaker(segments, [turn for turn in turns if turn[0] > PIECE_S + 30])
    named = {speaker: max(labels, key=labels.__getitem__) for speaker, labels in first.items()}
    print(f"\nlabels of each speaker's turns, first piece: {first}; second piece: {last}")
    assert len(named) == 2 and len(set(named.values())) == 2, first  # Diane and Sheila, apart
    for piece in (first, last):
        for speaker, labels in piece.items():
            # Most of each speaker's time under the name the first piece gave them (0.83 to 0.99
            # when written: a segment that runs over both speakers' turns has one speaker).
            assert labels.get(named[speaker], 0.0) > 0.7 * sum(labels.values()), piece
