"""Which speaker each transcript segment and word belongs to, from the speaker turns: pure functions.

A segment (or word) goes to the speaker whose turns overlap it longest, summed over that
speaker's turns; when no turn overlaps it (a segment in a pause, a zero-length word), to the
speaker of the nearest turn. Ties go to the speaker of the turn that starts first, so an
interval halfway between two turns goes to the one before it. With no turns at all (audio in
which nobody speaks) nothing gets a speaker.

`speaker_turn` is go-whisper's flag: true on the first segment of each new speaker, that is the
first segment and every one whose speaker differs from the previous segment's.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass

from serve_app.transcript import Segment

__all__ = ["SpeakerLabeller", "SpeakerTurn", "assign_speakers"]


@dataclass(frozen=True, slots=True)
class SpeakerTurn:
    """One stretch of speech by one speaker, in seconds from the start of the audio."""

    start: float
    end: float
    speaker: str


class SpeakerLabeller:
    """Labels segments one at a time, in transcript order: for a stream, as segments come."""

    def __init__(self, turns: Iterable[SpeakerTurn]) -> None:
        self._turns = sorted(turns, key=lambda turn: (turn.start, turn.end))
        self._starts = [turn.start for turn in self._turns]
        # Turns may overlap, so ends are not sorted: keep the running maximum and where it is.
        self._reach: list[float] = []
        self._furthest: list[int] = []
        for index, turn in enumerate(self._turns):
            if not self._reach or turn.end > self._reach[-1]:
                self._reach.append(turn.end)
                self._furthest.append(index)
            else:
                self._reach.append(self._reach[-1])
                self._furthest.append(self._furthest[-1])
        self._previous: str | None = None

    @property
    def has_speakers(self) -> bool:
        """Whether anybody speaks at all."""
        return bool(self._turns)

    def speaker_of(self, start: float, end: float) -> str | None:
        """The speaker of the interval [start, end] (see the module's docstring)."""
        if not self._turns:
            return None
        first = bisect_right(self._reach, start)  # before it, every turn ends by `start`
        after = bisect_left(self._starts, end)  # from it on, every turn starts at `end` or later
        candidates = list(range(first, after))
        if first > 0:
            candidates.append(self._furthest[first - 1])  # the nearest of the turns that end before
        if after < len(self._turns):
            candidates.append(after)  # the nearest of the turns that start after
        candidates.sort()

        overlaps: dict[str, float] = {}
        for index in candidates:
            turn = self._turns[index]
            overlap = min(turn.end, end) - max(turn.start, start)
            if overlap > 0:
                overlaps[turn.speaker] = overlaps.get(turn.speaker, 0.0) + overlap
        if overlaps:
            return max(overlaps, key=overlaps.__getitem__)  # dicts keep order: the earliest wins a tie

        def distance(index: int) -> float:
            turn = self._turns[index]
            return max(turn.start - end, start - turn.end, 0.0)

        return self._turns[min(candidates, key=distance)].speaker

    def label(self, segment: Segment) -> Segment:
        """Set `speaker` on `segment` and on each of its words, and `speaker_turn`; return it."""
        segment.speaker = self.speaker_of(segment.start, segment.end)
        for word in segment.words or ():
            word.speaker = self.speaker_of(word.start, word.end)
        segment.speaker_turn = segment.speaker is not None and segment.speaker != self._previous
        self._previous = segment.speaker
        return segment


def assign_speakers(segments: Iterable[Segment], turns: Iterable[SpeakerTurn]) -> list[Segment]:
    """Label every segment (and word) of a transcript with its speaker, in place; return them."""
    labeller = SpeakerLabeller(turns)
    return [labeller.label(segment) for segment in segments]
