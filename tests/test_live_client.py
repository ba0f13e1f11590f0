"""The live benchmarks' helpers (tests/live_client.py, tests/media.py): the clock, by which a
turn's latencies count from where its speech began and ended in the audio, found apart from the
session's turn detection; the audio delayed behind silence; and the WER of several clips."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
from live_client import RATE, LiveRun, behind_silence, pcm24, speech_regions
from media import speak, word_error_rate


def _pcm_and_end(text: str, folder: Path, name: str) -> tuple[bytes, float]:
    """`text` spoken by espeak-ng as audio/pcm, and where its last sound ends (seconds)."""
    pcm = pcm24(speak(text, folder / f"{name}.wav"))
    loud = np.flatnonzero(np.abs(np.frombuffer(pcm, "<i2")) > 100)
    return pcm, (loud[-1] + 1) / RATE


def test_speech_regions_end_where_the_speaker_stopped(tmp_path: Path) -> None:
    first, first_end = _pcm_and_end("The bridge was built in the spring.", tmp_path, "first")
    second, second_end = _pcm_and_end("Then the school was opened.", tmp_path, "second")
    pause = bytes(2 * int(0.3 * RATE))
    first = first[: int(first_end * RATE) * 2]
    regions = speech_regions(first + pause + second)
    assert len(regions) == 2, regions
    assert abs(regions[0][1] - first_end) < 0.1, (regions, first_end)
    resumed = first_end + 0.3
    assert resumed - 0.05 < regions[1][0] < resumed + 0.3, (regions, resumed)
    assert abs(regions[1][1] - (resumed + second_end)) < 0.1, (regions, resumed + second_end)


def _event(kind: str, **fields: object) -> SimpleNamespace:
    return SimpleNamespace(type=f"input_audio_buffer.{kind}", item_id="item_1", **fields)


def test_a_turn_ended_at_a_short_pause_counts_from_its_speech() -> None:
    """A long utterance's turn ends at a pause of 0.2 s (LONG_PAUSE_S), not 0.5 s: its latency
    counts from where the speech stopped, not from half a second before speech_stopped."""
    completed = SimpleNamespace(type="conversation.item.input_audio_transcription.completed", item_id="item_1", transcript="x")
    run = LiveRun(
        events=[
            (0.0, _event("speech_started", audio_start_ms=400)),
            (1.5, SimpleNamespace(type="conversation.item.input_audio_transcription.delta", item_id="item_1", delta="x")),
            (12.0, _event("speech_stopped", audio_end_ms=11_960)),
            (12.6, completed),
        ],
        speech=[(0.7, 11.76), (12.1, 14.0)],
    )
    assert run.completed_at() == [(11.76, 12.6 - 11.76)]
    assert run.first_delta_latencies() == [1.5 - 0.7]


def test_a_turn_cut_in_the_middle_of_speech_counts_from_the_cut() -> None:
    run = LiveRun(speech=[(0.7, 25.0)])
    assert run.speech_end(20.7) == 20.7
    assert run.speech_start(20.7) == 20.7


def test_silence_ahead_delays_the_speech_by_as_long() -> None:
    speech = np.full(RATE // 2, 1000, "<i2").tobytes()  # half a second of sound
    delayed = behind_silence(speech, 50)
    assert len(delayed) - len(speech) == 2 * 24000 * 50 // 1000
    assert delayed.endswith(speech) and not any(delayed[: len(delayed) - len(speech)])


def test_the_wer_of_several_clips_counts_each_by_its_words() -> None:
    # One word wrong of the four in the first clip, none of the two in the second: 1 of 6 words,
    # not the mean of 0.25 and 0.
    assert word_error_rate(["The quick brown fox.", "Hello there."], ["the quick brown box", "hello, there"]) == 1 / 6
