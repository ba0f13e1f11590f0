"""Which speaker each transcript word belongs to, from the speaker turns; segments split where the
speaker changes: pure functions.

Speakers go to words: a word (or a segment without words) goes to the speaker whose turns
overlap it longest, summed over that speaker's turns; when no turn overlaps it (a word in a
pause, a zero-length word), to the speaker of the nearest turn. Ties go to the speaker of the
turn that starts first, so an interval halfway between two turns goes to the one before it.
The turns to label with are pyannote's exclusive diarization (one speaker at a time), made for
lining turns up with a transcript.

A segment whose words belong to two or more speakers is split at each change: each piece has
its words, the text they spell, and their times (a piece carries no tokens: which of the
segment's tokens spell which word is the engine's to know). A segment whose words do not spell
its text stays whole, with the speaker of most of its words' time. Nothing is ever dropped:
with no turns at all (the Diarizer heard nobody) segments and words keep no speaker.

`speaker_turn` is go-whisper's flag: true on the first segment of each new speaker, that is the
first segment and every one whose speaker differs from the previous segment's. Segments are
numbered again from 0 as they come out, pieces included.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from serve_app.transcript import Segment, SpeakerTurn, Word

__all__ = ["Diarization", "SpeakerLabeller", "SpeakerTurn", "assign_speakers"]


class SpeakerLabeller:
    """Labels segments one at a time, in transcript order: for a stream, as segments come."""

    def __init__(self, turns: Iterable[SpeakerTurn]) -> None:
        self._turns: list[SpeakerTurn] = []
        self.add(turns)
        self._previous: str | None = None
        self._next_id = 0

    def add(self, turns: Iterable[SpeakerTurn]) -> None:
        """More turns to label with (a diarized stream's next piece)."""
        self._turns = sorted([*self._turns, *turns], key=lambda turn: (turn.start, turn.end))
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

    def label(self, segment: Segment) -> list[Segment]:
        """`segment` with `speaker` set on it and on each of its words, split where its words'
        speaker changes; `speaker_turn` and `id` set on each piece (see the module's docstring)."""
        words = segment.words or []
        for word in words:
            word.speaker = self.speaker_of(word.start, word.end)
        if not words:
            pieces = [segment]
            segment.speaker = self.speaker_of(segment.start, segment.end)
        elif "".join(word.word for word in words) != segment.text:
            pieces = [segment]
            segment.speaker = _most_time(words)
        else:
            runs = _runs(words)
            pieces = [_piece(segment, run) for run in runs] if len(runs) > 1 else [segment]
            segment.speaker = words[0].speaker
        for piece in pieces:
            piece.id = self._next_id
            self._next_id += 1
            piece.speaker_turn = piece.speaker is not None and piece.speaker != self._previous
            self._previous = piece.speaker
        return pieces


def _runs(words: list[Word]) -> list[list[Word]]:
    """The words in runs of one speaker."""
    runs: list[list[Word]] = []
    for word in words:
        if runs and runs[-1][-1].speaker == word.speaker:
            runs[-1].append(word)
        else:
            runs.append([word])
    return runs


def _piece(segment: Segment, words: list[Word]) -> Segment:
    return replace(
        segment,
        start=words[0].start,
        end=words[-1].end,
        text="".join(word.word for word in words),
        tokens=[],
        words=words,
        speaker=words[0].speaker,
    )


def _most_time(words: list[Word]) -> str | None:
    """The speaker of most of the words' time (the first one's on a tie, or when all are instants)."""
    time: dict[str | None, float] = {}
    for word in words:
        time[word.speaker] = time.get(word.speaker, 0.0) + max(0.0, word.end - word.start)
    return max(time, key=time.__getitem__)


def assign_speakers(segments: Iterable[Segment], turns: Iterable[SpeakerTurn]) -> list[Segment]:
    """Label every word of a transcript with its speaker, in place, and split the segments where
    the speaker changes; return the segments (see the module's docstring)."""
    labeller = SpeakerLabeller(turns)
    return [piece for segment in segments for piece in labeller.label(segment)]


@dataclass(frozen=True, slots=True)
class Diarization:
    """What the Diarizer found in one audio: its speakers' turns, both ways pyannote gives them,
    and each speaker's embedding. Speakers are named alike in all three: `SPEAKER_00`,
    `SPEAKER_01`, ... in order of first appearance, or a known speaker's name (known.py)."""

    turns: list[SpeakerTurn] = field(default_factory=list)
    """Overlapping where two people speak at once: who spoke when, as RTTM writes it."""
    exclusive: list[SpeakerTurn] = field(default_factory=list)
    """One speaker at a time (pyannote's exclusive diarization): what words are labelled with."""
    embeddings: dict[str, list[float]] = field(default_factory=dict)
    """Each speaker's centroid in the pipeline's speaker-embedding space."""

    def renamed(self, names: dict[str, str]) -> Diarization:
        """The same, with the speakers `names` maps renamed."""

        def turns(turns: list[SpeakerTurn]) -> list[SpeakerTurn]:
            return [SpeakerTurn(turn.start, turn.end, names.get(turn.speaker, turn.speaker)) for turn in turns]

        return Diarization(
            turns(self.turns), turns(self.exclusive), {names.get(name, name): row for name, row in self.embeddings.items()}
        )
