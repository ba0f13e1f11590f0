"""Server VAD's turn decisions, from speech probabilities given window by window (32 ms each):
what a session does with Silero's, which tests/test_realtime.py streams through whole sessions."""

from __future__ import annotations

import numpy as np

from serve_app.api.realtime.turns import EARLY_DECODE_S, LEAD_IN_AFTER_S, Cut, Quiet, Started, Stopped, Turns
from serve_app.engine.live import SAMPLE_RATE, WINDOW, TurnDetection

TURN = TurnDetection(threshold=0.5, prefix_padding_ms=300, silence_duration_ms=500)
PADDING = 300 * SAMPLE_RATE // 1000
SPEECH, UNSURE, SILENCE = 0.9, 0.4, 0.1
"""Over the threshold; under it but not by 0.15 (no silence starts); silence."""


def windows(*runs: tuple[float, int]) -> np.ndarray:
    return np.concatenate([np.full(count, probability, np.float32) for probability, count in runs])


def at(window: int) -> int:
    return window * WINDOW


def test_an_utterance_starts_padded_and_ends_after_the_turns_silence() -> None:
    turns = Turns(TURN, origin=0, longest=20 * SAMPLE_RATE)
    events = turns.decide(windows((SILENCE, 20), (SPEECH, 10), (UNSURE, 5), (SILENCE, 21)), floor=0, now=at(56))
    silence_from = at(35)  # the unsure windows did not start the silence
    ended = next(w for w in range(35, 56) if at(w + 1) - silence_from >= 500 * SAMPLE_RATE // 1000)
    assert events == [
        Quiet(at(20) - PADDING),  # the 20 quiet windows' drops, as one
        Started(at(20) - PADDING, heard=at(20)),
        Stopped(
            at(ended + 1),
            speech_end=silence_from + int(EARLY_DECODE_S * SAMPLE_RATE),
            keep_from=silence_from + int(LEAD_IN_AFTER_S * SAMPLE_RATE),
        ),
        Quiet(at(56) - PADDING),
    ]
    assert not turns.speaking and turns.speech_end(at(56)) is None


def test_the_padding_never_reaches_before_the_buffer_or_the_origin() -> None:
    turns = Turns(TURN, origin=at(100), longest=20 * SAMPLE_RATE)
    assert turns.decide(windows((SPEECH, 1)), floor=at(99), now=at(101)) == [Started(at(99), heard=at(100))]


def test_a_silence_under_way_says_where_the_speech_ended_and_speech_resuming_cancels_it() -> None:
    turns = Turns(TURN, origin=0, longest=20 * SAMPLE_RATE)
    turns.decide(windows((SPEECH, 20), (SILENCE, 8)), floor=0, now=at(28))
    assert turns.speaking and turns.speech_end(at(28)) == at(20) + int(EARLY_DECODE_S * SAMPLE_RATE)
    assert turns.decide(windows((SPEECH, 1)), floor=0, now=at(29)) == []
    assert turns.speech_end(at(29)) is None


def test_a_long_utterance_ends_at_a_short_pause_and_a_short_one_does_not() -> None:
    longest = 4 * SAMPLE_RATE  # past half of it, a pause of LONG_PAUSE_S (0.2 s: 7 windows) ends the turn
    short, long = Turns(TURN, origin=0, longest=longest), Turns(TURN, origin=0, longest=longest)
    assert short.decide(windows((SPEECH, 31), (SILENCE, 7)), floor=0, now=at(38)) == [Started(0, heard=0)]
    ended = long.decide(windows((SPEECH, 80), (SILENCE, 7)), floor=0, now=at(87))
    assert [type(event) for event in ended] == [Started, Stopped] and ended[1].end == at(87), ended


def test_speech_with_no_pause_is_cut_at_the_quietest_window_of_its_last_half() -> None:
    longest = 2 * SAMPLE_RATE  # 62.5 windows
    turns = Turns(TURN, origin=0, longest=longest)
    probabilities = windows((SPEECH, 120))
    probabilities[10] = 0.36  # the quietest of all, but in the first half
    probabilities[50] = UNSURE
    events = turns.decide(probabilities, floor=0, now=at(120))
    cuts = [event for event in events if isinstance(event, Cut)]
    assert cuts[0] == Cut(at(51)), events  # the end of window 50
    assert turns.speaking and turns.start == cuts[-1].at
    assert all(later.at - earlier.at <= longest for earlier, later in zip(cuts, cuts[1:])), cuts


def test_after_a_reset_speech_starts_a_new_utterance() -> None:
    turns = Turns(TURN, origin=0, longest=20 * SAMPLE_RATE)
    turns.decide(windows((SPEECH, 10), (SILENCE, 8)), floor=0, now=at(18))
    turns.reset()  # the client committed
    assert turns.speech_end(at(18)) is None
    assert turns.decide(windows((SPEECH, 1)), floor=at(18), now=at(19)) == [Started(at(18), heard=at(18))]


def test_resumed_the_utterance_in_progress_ends_at_the_next_silence() -> None:
    turns = Turns(TurnDetection(silence_duration_ms=300), origin=at(40), longest=20 * SAMPLE_RATE)
    turns.resume(at(10))  # new settings, mid-utterance
    events = turns.decide(windows((SPEECH, 5), (SILENCE, 10)), floor=at(10), now=at(55))
    assert [type(event) for event in events] == [Stopped] and events[0].speech_end > at(45), events


def test_resumed_an_utterance_already_too_long_is_cut_at_once() -> None:
    # A client that changes the settings again and again mid-utterance still gets it cut at
    # realtime_max_utterance_s: the resumed utterance keeps its start.
    turns = Turns(TURN, origin=at(200), longest=at(100))
    turns.resume(at(50))
    assert turns.decide(windows((SPEECH, 1)), floor=at(50), now=at(201)) == [Cut(at(201))]
