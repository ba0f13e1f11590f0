"""A long file diarized in pieces (serve_app/diarization/pieces.py): where it is cut, and how each
piece's speakers are named after the file's. Pure: no pipeline (tests/test_long_diarization.py
diarizes a long recording through the service)."""

from __future__ import annotations

import numpy as np
import pytest

from serve_app.diarization.pieces import (
    CUT_SEARCH_S,
    LONG_S,
    PIECE_S,
    SpeakerLinks,
    cuts,
    in_pieces,
    joined,
)
from serve_app.diarization.speakers import Diarization, SpeakerTurn

RATE = 100  # samples a second: enough to place cuts, small enough to build hours of audio


def noise(seconds: float) -> np.ndarray:
    return np.random.default_rng(0).uniform(-0.5, 0.5, int(seconds * RATE)).astype(np.float32)


def test_audio_that_is_not_long_is_one_piece() -> None:
    audio = noise(LONG_S)
    assert cuts(audio, RATE) == [0, len(audio)]


def test_a_long_file_is_cut_in_the_quietest_place_near_each_piece_s() -> None:
    audio = noise(2000)
    pause = int((PIECE_S + 7) * RATE)  # 7 s after the first cut's place, within CUT_SEARCH_S
    audio[pause : pause + RATE] = 0
    bounds = cuts(audio, RATE)
    assert bounds[0] == 0 and bounds[-1] == len(audio)
    assert len(bounds) == 4  # 2000 s: two pieces of about PIECE_S, and the last 800 s (not over LONG_S)
    assert pause <= bounds[1] <= pause + RATE
    assert abs(bounds[2] - bounds[1] - PIECE_S * RATE) <= CUT_SEARCH_S * RATE


def voice(*weights: float) -> list[float]:
    """An embedding: speakers are the axes of a small space."""
    return [*weights, *[0.0] * (4 - len(weights))]


def found(*turns: tuple[float, float, str], embeddings: dict[str, list[float]]) -> Diarization:
    spoken = [SpeakerTurn(start, end, speaker) for start, end, speaker in turns]
    return Diarization(spoken, spoken, embeddings)


def test_a_pieces_speakers_take_the_names_of_the_voices_they_sound_like() -> None:
    links = SpeakerLinks(similarity=0.8)
    first = links.link(
        found((0, 5, "SPEAKER_00"), (5, 9, "SPEAKER_01"), embeddings={"SPEAKER_00": voice(1), "SPEAKER_01": voice(0, 1)}),
        offset=0,
    )
    assert [turn.speaker for turn in first.turns] == ["SPEAKER_00", "SPEAKER_01"]
    # The next piece's clustering numbers its speakers its own way, and a third voice joins.
    second = links.link(
        found(
            (0, 2, "SPEAKER_00"),
            (2, 4, "SPEAKER_01"),
            (4, 6, "SPEAKER_02"),
            embeddings={"SPEAKER_00": voice(0.1, 1), "SPEAKER_01": voice(0, 0, 1), "SPEAKER_02": voice(1, 0.1)},
        ),
        offset=600,
    )
    assert [(turn.start, turn.speaker) for turn in second.turns] == [
        (600, "SPEAKER_01"),
        (602, "SPEAKER_02"),
        (604, "SPEAKER_00"),
    ]
    assert second.exclusive == second.turns
    assert set(second.embeddings) == {"SPEAKER_00", "SPEAKER_01", "SPEAKER_02"}
    assert np.argmax(second.embeddings["SPEAKER_02"]) == 2


def test_two_speakers_of_a_piece_never_take_one_name() -> None:
    links = SpeakerLinks(similarity=0.8)
    links.link(found((0, 5, "SPEAKER_00"), embeddings={"SPEAKER_00": voice(1)}), offset=0)
    both = links.link(
        found((0, 5, "SPEAKER_00"), (5, 6, "SPEAKER_01"), embeddings={"SPEAKER_00": voice(1, 0.3), "SPEAKER_01": voice(1, 0.2)}),
        offset=600,
    )
    assert [turn.speaker for turn in both.turns] == ["SPEAKER_01", "SPEAKER_00"]  # the more alike keeps the name


def test_with_as_many_speakers_as_allowed_a_new_voice_goes_to_the_nearest() -> None:
    links = SpeakerLinks(similarity=0.8, most=2)
    links.link(
        found((0, 5, "A"), (5, 9, "B"), embeddings={"A": voice(1), "B": voice(0, 1)}),
        offset=0,
    )
    third = links.link(found((0, 5, "C"), embeddings={"C": voice(0.2, 1, 1)}), offset=600)
    assert [turn.speaker for turn in third.turns] == ["SPEAKER_01"]
    assert len(third.embeddings) == 2


def test_a_new_speaker_may_be_named_after_a_known_voice() -> None:
    named: list[str] = []

    def name_new(default: str, centroid: np.ndarray) -> str | None:
        named.append(default)
        return "Ada" if centroid[2] > 0.5 else None

    links = SpeakerLinks(similarity=0.8, name_new=name_new)
    one = links.link(found((0, 5, "x"), embeddings={"x": voice(1)}), offset=0)
    two = links.link(found((0, 1, "y"), (1, 2, "z"), embeddings={"y": voice(0, 0, 1), "z": voice(0, 1)}), offset=600)
    assert [turn.speaker for turn in one.turns + two.turns] == ["SPEAKER_00", "Ada", "SPEAKER_02"]
    assert named == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_02"]


def test_speakers_without_an_embedding_are_left_out() -> None:
    links = SpeakerLinks(similarity=0.8)
    piece = links.link(found((0, 1, "a"), (1, 2, "b"), embeddings={"a": voice(1), "b": voice()}), offset=0)
    assert [turn.speaker for turn in piece.turns] == ["SPEAKER_00"]


def test_in_pieces_diarizes_each_piece_on_its_own_and_joins_them_on_the_files_clock() -> None:
    audio = noise(2000)
    bounds = cuts(audio, RATE)
    seen: list[float] = []

    def diarize(piece: np.ndarray) -> Diarization:
        seen.append(len(piece) / RATE)
        return found((1, 2, "SPEAKER_00"), embeddings={"SPEAKER_00": voice(1)})

    pieces = list(in_pieces(audio, bounds, RATE, diarize, SpeakerLinks(similarity=0.8)))
    assert sum(seen) == pytest.approx(2000)
    assert [piece.until for piece in pieces] == [bound / RATE for bound in bounds[1:]]
    whole = joined(pieces)
    assert [turn.start for turn in whole.turns] == [1 + bound / RATE for bound in bounds[:-1]]
    assert {turn.speaker for turn in whole.turns} == {"SPEAKER_00"}


def test_similarities_of_no_speakers_or_no_references_are_an_empty_table() -> None:
    from serve_app.diarization.known import similarities

    assert similarities([], [voice(1)]).shape == (0, 1)
    assert similarities([voice(1), voice(0, 1)], []).shape == (2, 0)
