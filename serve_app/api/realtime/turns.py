"""Server VAD's turns: where an utterance starts in a session's audio, where a long enough
silence ends it, and where speech that goes on too long is cut; on the session's clock (16 kHz
samples). `Turns` decides from Silero's speech probability of each 32 ms window; the session
carries out what it decides (the events below) on its buffer and its items."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from serve_app.engine.live import SAMPLE_RATE, WINDOW, SpeechDetector, TurnDetection

__all__ = ["EARLY_DECODE_S", "LEAD_IN_AFTER_S", "LONG_PAUSE_S", "Cut", "Quiet", "Started", "Stopped", "Turns"]

EARLY_DECODE_S = 0.2
"""This far into a silence, the utterance so far is decoded at once, so that when the silence
lasts long enough to end the turn its text is ready (the speech decoded, padded with this much
of the silence after it). No other partial decode starts in a silence meanwhile."""
LONG_PAUSE_S = 0.2
"""An utterance past half of `realtime_max_utterance_s` ends at its next pause of this long,
not only at a silence of the turn's `silence_duration_ms`: a monologue comes back in pieces cut
where the speaker breathes, each completed soon after it is spoken."""
LEAD_IN_AFTER_S = 0.1
"""The silence that ended a turn stays in the buffer from this far into it, so that speech
resuming at once (after a pause as short as the turn's silence) still gets its prefix padding,
there. Without that lead-in, tiny.en heard the cut-off start of an utterance as other words
("Oh, I'm originally" as "I don't know why I'm originally"); the first 100 ms are left out,
where the last word's tail can still sound after the VAD has heard silence. On the five
espeak-ng passages of benchmarks/live_engine.py, the completed texts' WER against the file route
went from 0.098 to 0.086 (0.053 to 0.013 on the sample call). Chosen on little speech: from 0
or 150 ms into the silence, tiny.en misheard another utterance of the sample call (0.080)."""
QUIET_BELOW = 0.15
"""Speech stops at windows this far under the threshold: the hysteresis of Silero's own speech
timestamps."""


@dataclass(frozen=True, slots=True)
class Quiet:
    """No speech: the buffer before `before` may go (all but the prefix padding)."""

    before: int


@dataclass(frozen=True, slots=True)
class Started:
    """Speech heard at `heard`: an utterance starts at `start`, the prefix padding before it
    (never before the buffer's start)."""

    start: int
    heard: int


@dataclass(frozen=True, slots=True)
class Stopped:
    """The silence after the utterance lasted long enough: it ends at `end`. Its speech ended
    at `speech_end` (the silence's start, padded as `Turns.speech_end` pads it); the buffer
    before `keep_from` may go."""

    end: int
    speech_end: int
    keep_from: int


@dataclass(frozen=True, slots=True)
class Cut:
    """Speech went on for `realtime_max_utterance_s` with no pause long enough: the utterance
    ends at `at`, the quietest window of its last half, and the next starts there."""

    at: int


Event = Quiet | Started | Stopped | Cut


@dataclass(slots=True)
class Turns:
    """One session's turn detection, from its `origin` on the session's clock (it may come on
    after audio has arrived); `longest` is `realtime_max_utterance_s` in samples."""

    turn: TurnDetection
    origin: int
    longest: int
    vad: SpeechDetector = field(default_factory=SpeechDetector)
    windows: int = 0
    speaking: bool = False
    start: int = 0
    """Where the utterance in progress starts, while `speaking`."""
    silence_from: int | None = None
    """Where the silence under way in the utterance began, if one is."""
    probabilities: list[float] = field(default_factory=list)
    """The utterance's windows' speech probabilities, after the one that started it."""

    def feed(self, samples: np.ndarray, *, floor: int, now: int) -> list[Event]:
        """What `samples`, just added to the buffer, decide: the buffer starts at `floor` and
        ends at `now`."""
        return self.decide(self.vad.feed(samples), floor=floor, now=now)

    def decide(self, probabilities: np.ndarray, *, floor: int, now: int) -> list[Event]:
        """What the next windows' speech `probabilities` decide (see `feed`)."""
        events: list[Event] = []
        padding = self.turn.prefix_padding_ms * SAMPLE_RATE // 1000
        for probability in probabilities:
            start = self.origin + self.windows * WINDOW
            end = start + WINDOW
            self.windows += 1
            if not self.speaking:
                if probability >= self.turn.threshold:
                    self.speaking, self.silence_from, self.probabilities = True, None, []
                    self.start = max(floor, start - padding)
                    events.append(Started(self.start, heard=start))
                else:
                    floor = max(floor, end - padding)
                    if events and isinstance(events[-1], Quiet):
                        events.pop()
                    events.append(Quiet(floor))
                continue
            self.probabilities.append(float(probability))
            if probability >= self.turn.threshold:
                self.silence_from = None
            elif probability < max(self.turn.threshold - QUIET_BELOW, 0.01) and self.silence_from is None:
                self.silence_from = start
            if self.silence_from is not None and end - self.silence_from >= self.silence_ending(now):
                speech_end = self.speech_end(now)
                assert speech_end is not None
                floor = max(floor, min(end, self.silence_from + int(LEAD_IN_AFTER_S * SAMPLE_RATE)))
                events.append(Stopped(end, speech_end=speech_end, keep_from=floor))
                self.reset()
            elif end - self.start >= self.longest:
                half = len(self.probabilities) // 2
                quietest = half + int(np.argmin(self.probabilities[half:]))
                cut = min(end, end - (len(self.probabilities) - 1 - quietest) * WINDOW)
                events.append(Cut(cut))
                floor = self.start = max(floor, cut)
                self.probabilities = self.probabilities[quietest + 1 :]
                self.silence_from = None
        return events

    def resume(self, start: int) -> None:
        """An utterance that started at `start` is in progress: new settings came mid-utterance."""
        self.speaking, self.start, self.silence_from, self.probabilities = True, start, None, []

    def reset(self) -> None:
        """No utterance in progress: it ended, or the client committed or cleared the buffer."""
        self.speaking, self.silence_from, self.probabilities = False, None, []

    def silence_ending(self, now: int) -> int:
        """The samples of silence that end the utterance in progress: the turn's
        `silence_duration_ms`, or LONG_PAUSE_S once the utterance is long (see there)."""
        silence = self.turn.silence_duration_ms * SAMPLE_RATE // 1000
        if now - self.start >= self.longest / 2:
            return min(silence, int(LONG_PAUSE_S * SAMPLE_RATE))
        return silence

    def speech_end(self, now: int) -> int | None:
        """Where the utterance in progress has stopped, if a silence is heard: the silence's
        start, padded with EARLY_DECODE_S of it (half the silence that ends the turn at most)."""
        if self.silence_from is None:
            return None
        return self.silence_from + min(int(EARLY_DECODE_S * SAMPLE_RATE), self.silence_ending(now) // 2)
