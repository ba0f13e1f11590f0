"""A session's audio on its own clock: the utterances it cut, and the audio not yet committed."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Item", "Timeline"]


@dataclass(slots=True)
class Item:
    """One utterance: where it starts on the session's clock (16 kHz samples), and the words of
    its partial decodes: those sent as deltas, and those of the latest decode."""

    id: str
    start: int
    heard: int = 0
    """Where its speech was heard (its start, less the prefix padding), or where the client's
    audio began (no turn detection)."""
    sent: list[str] = field(default_factory=list)
    last_words: list[str] = field(default_factory=list)
    decoded_until: int = 0
    """Where the latest partial decode asked for ends (it may still be under way)."""
    decoded: tuple[int, str] | None = None
    """The latest partial decode done: where its audio ends, and its text."""
    speech_end: int | None = None
    """Server VAD: where the silence that ended the utterance began, padded (`Turns.speech_end`)."""
    dropped: bool = False
    audio: np.ndarray | None = None
    """The committed audio; None while the utterance is in progress."""


class Timeline:
    """The session's uncommitted audio at 16 kHz, addressed by sample on the session's clock."""

    def __init__(self) -> None:
        self.pieces: deque[np.ndarray] = deque()
        self.start = 0
        self.end = 0

    def append(self, samples: np.ndarray) -> None:
        if len(samples):
            self.pieces.append(samples)
            self.end += len(samples)

    def view(self, start: int, end: int | None = None) -> np.ndarray:
        start, end = max(start, self.start), self.end if end is None else min(end, self.end)
        if end <= start:
            return np.zeros(0, np.float32)
        whole = np.concatenate(list(self.pieces)) if len(self.pieces) != 1 else self.pieces[0]
        self.pieces = deque([whole])
        return whole[start - self.start : end - self.start].copy()

    def drop_before(self, position: int) -> None:
        position = min(position, self.end)
        while self.pieces and self.start + len(self.pieces[0]) <= position:
            self.start += len(self.pieces.popleft())
        if self.pieces and position > self.start:
            self.pieces[0] = self.pieces[0][position - self.start :]
            self.start = position
        if not self.pieces:
            self.start = self.end

    @property
    def samples(self) -> int:
        return self.end - self.start
