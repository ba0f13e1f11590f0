"""A short clip's speakers clustered again by turns (serve_app/diarization/short_clips.py), with
voices given as plain vectors: pure logic. The real pipeline on real speech is checked through
the service (tests/test_speakers_api.py: Sheila's line in the sample call's first 12 s)."""

from __future__ import annotations

import numpy as np

from serve_app.diarization.short_clips import SHORT_CLIP_S, by_turns
from serve_app.diarization.speakers import Diarization, SpeakerTurn
from serve_app.engine.audio import SAMPLE_RATE

DIANE, SHEILA = np.array([1.0, 0.1, 0.0]), np.array([0.0, 0.2, 1.0])


def clip(seconds: float, voices: list[tuple[float, float, np.ndarray]]) -> tuple[np.ndarray, object]:
    """Audio whose samples say which voice speaks there (its sample value is an index into
    `voices`), and an embedding function that gives that voice's vector."""
    audio = np.full(int(seconds * SAMPLE_RATE), -1.0, np.float32)
    for index, (start, end, _) in enumerate(voices):
        audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)] = index

    def embed(piece: np.ndarray) -> np.ndarray:
        said = np.bincount(piece[piece >= 0].astype(int), minlength=len(voices))
        return voices[int(np.argmax(said))][2]

    return audio, embed


# pyannote's labels mixed, as on the sample call: Diane and Sheila each under both names.
MIXED = [
    (1.0, 2.0, "SPEAKER_00"),
    (2.5, 3.5, "SPEAKER_01"),
    (4.0, 6.0, "SPEAKER_00"),
    (6.5, 8.0, "SPEAKER_00"),
    (8.5, 9.8, "SPEAKER_01"),
]
VOICES = [DIANE, SHEILA, DIANE, SHEILA, DIANE]


def found(turns: list[tuple[float, float, str]]) -> Diarization:
    spoken = [SpeakerTurn(*turn) for turn in turns]
    return Diarization(spoken, list(spoken), {"SPEAKER_00": [1.0, 0.0, 0.0], "SPEAKER_01": [0.0, 0.0, 1.0]})


def test_a_short_clips_speakers_follow_the_voices_of_its_turns() -> None:
    audio, embed = clip(12, [(start, end, voice) for (start, end, _), voice in zip(MIXED, VOICES)])
    again = by_turns(audio, found(MIXED), embed)
    diane = {turn.speaker for turn, voice in zip(again.exclusive, VOICES) if voice is DIANE}
    sheila = {turn.speaker for turn, voice in zip(again.exclusive, VOICES) if voice is SHEILA}
    assert diane == {"SPEAKER_00"} and sheila == {"SPEAKER_01"}
    assert [(t.start, t.end) for t in again.turns] == [(start, end) for start, end, _ in MIXED]
    assert np.allclose(again.embeddings["SPEAKER_00"], DIANE / np.linalg.norm(DIANE))


def test_a_turn_too_short_to_embed_keeps_its_neighbours_speaker() -> None:
    turns = [*MIXED, (9.8, 9.9, "SPEAKER_01")]
    audio, embed = clip(12, [(start, end, voice) for (start, end, _), voice in zip(MIXED, VOICES)])
    again = by_turns(audio, found(turns), embed)
    assert again.turns[-1] == SpeakerTurn(8.5, 9.9, "SPEAKER_00")  # Diane's last turn, merged with it


def test_long_clips_and_single_speakers_are_left_as_pyannote_gave_them() -> None:
    voices = [(start, end, voice) for (start, end, _), voice in zip(MIXED, VOICES)]
    audio, embed = clip(SHORT_CLIP_S, voices)
    assert by_turns(audio, found(MIXED), embed) == found(MIXED)
    one = Diarization([SpeakerTurn(1.0, 9.8, "SPEAKER_00")], [SpeakerTurn(1.0, 9.8, "SPEAKER_00")], {"SPEAKER_00": [1.0, 0, 0]})
    assert by_turns(clip(12, voices)[0], one, embed) == one


def test_speakers_pyannote_got_right_stay_when_the_turns_clusters_sound_less_alike() -> None:
    """A short odd-sounding turn of Diane's: clustered by turns it would be a speaker alone, and
    Diane and Sheila one; pyannote's speakers sound more alike, and stay."""
    odd = np.array([0.0, -1.0, 0.0])
    right = [(1.0, 2.0, "SPEAKER_00"), (2.5, 3.5, "SPEAKER_01"), (4.0, 6.0, "SPEAKER_00"), (6.5, 7.0, "SPEAKER_00")]
    audio, embed = clip(12, [(start, end, voice) for (start, end, _), voice in zip(right, [DIANE, SHEILA, DIANE, odd])])
    assert by_turns(audio, found(right), embed) == found(right)
