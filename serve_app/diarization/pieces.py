"""A long file diarized in pieces, its speakers linked from piece to piece: pure functions.

pyannote clusters a file's speakers once, over the whole file, so nothing of a diarization is
known before all of it is done: an hour takes about five minutes on two cores, and a streamed
diarized transcription would send nothing meanwhile. Audio longer than LONG_S is diarized
PIECE_S at a time instead, each piece on its own, its turns given out as soon as it is done.

Cuts. Each cut goes to the quietest CUT_WINDOW_S of the CUT_SEARCH_S either side of its place
(the lowest RMS), so that it falls in a pause rather than in a word.

Linking. Each piece's speakers come with their centroids (`Diarization.embeddings`). A piece's
speaker is the file's speaker whose centroid is most alike (cosine), if at least `similarity`
alike, pairs taken best first, one of the file's speakers to each of the piece's; otherwise a
new speaker of the file, named after the next free `SPEAKER_nn`. Once the file has as many
speakers as the request allows (`most`), a piece's unmatched speaker goes to the most alike of
the file's. The file's centroids are the speech-weighted means of their pieces' (unit-normalised)
centroids. A speaker named by a known voice keeps that name (`name_new` names each new speaker).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from serve_app.diarization.known import similarities
from serve_app.diarization.speakers import Diarization, SpeakerTurn

__all__ = ["CUT_SEARCH_S", "LONG_S", "PIECE_S", "DiarizedPiece", "SpeakerLinks", "cuts", "in_pieces", "joined"]

PIECE_S = 600.0
LONG_S = 900.0
"""Audio up to this long is diarized whole, as pyannote would; longer, in pieces of PIECE_S."""
CUT_SEARCH_S = 15.0
CUT_WINDOW_S = 0.5


@dataclass(frozen=True, slots=True)
class DiarizedPiece:
    """What is known once a piece is done: every turn up to `until` seconds, on the file's clock
    and with the file's speaker names; `found.embeddings` holds the file's centroids so far."""

    until: float
    found: Diarization


def cuts(audio: np.ndarray, sample_rate: int) -> list[int]:
    """Where to cut `audio` (samples), its ends included: [0, len] when it is not long."""
    total = len(audio)
    if total <= LONG_S * sample_rate:
        return [0, total]
    piece, search, window = int(PIECE_S * sample_rate), int(CUT_SEARCH_S * sample_rate), int(CUT_WINDOW_S * sample_rate)
    bounds = [0]
    while total - bounds[-1] > piece + piece // 2:
        place = bounds[-1] + piece
        around = audio[place - search : place + search]
        energy = np.convolve(np.square(around, dtype=np.float64), np.ones(window), mode="valid")
        bounds.append(place - search + int(np.argmin(energy)) + window // 2)
    bounds.append(total)
    return bounds


@dataclass
class SpeakerLinks:
    """The file's speakers so far: their names, centroids and speech."""

    similarity: float
    most: int | None = None
    name_new: Callable[[str, np.ndarray], str | None] = lambda default, centroid: None
    centroids: dict[str, np.ndarray] = field(default_factory=dict)
    """Each speaker's speech-weighted sum of unit-normalised centroids."""
    _numbered: int = 0

    def link(self, found: Diarization, offset: float) -> Diarization:
        """`found` (a piece's, on its own clock) on the file's clock, with the file's names."""
        local = [name for name in found.embeddings if np.any(found.embeddings[name])]
        speech = dict.fromkeys(local, 0.0)
        for turn in found.turns:
            if turn.speaker in speech:
                speech[turn.speaker] += turn.end - turn.start
        names = self._match(local, found.embeddings)
        for name in local:
            vector = np.asarray(found.embeddings[name], dtype=np.float64)
            weighted = vector / np.linalg.norm(vector) * max(speech[name], 1e-3)
            known = self.centroids.get(names[name])
            self.centroids[names[name]] = weighted if known is None else known + weighted

        def shifted(turns: list[SpeakerTurn]) -> list[SpeakerTurn]:
            return [
                SpeakerTurn(round(turn.start + offset, 3), round(turn.end + offset, 3), names[turn.speaker])
                for turn in turns
                if turn.speaker in names
            ]

        return Diarization(shifted(found.turns), shifted(found.exclusive), self.embeddings())

    def embeddings(self) -> dict[str, list[float]]:
        return {name: [float(x) for x in vector / np.linalg.norm(vector)] for name, vector in self.centroids.items()}

    def _match(self, local: list[str], embeddings: dict[str, list[float]]) -> dict[str, str]:
        known = list(self.centroids)
        scores = similarities([embeddings[name] for name in local], [self.centroids[name] for name in known])
        pairs = sorted(((scores[i, j], i, j) for i in range(len(local)) for j in range(len(known))), reverse=True)
        names: dict[str, str] = {}
        for score, i, j in pairs:
            if score < self.similarity:
                break
            if local[i] not in names and known[j] not in names.values():
                names[local[i]] = known[j]
        for i, name in enumerate(local):
            if name in names:
                continue
            if self.most is not None and len(self.centroids) >= self.most and known:
                names[name] = known[int(np.argmax(scores[i]))]
                continue
            names[name] = self._new(np.asarray(embeddings[name], dtype=np.float64))
        return names

    def _new(self, centroid: np.ndarray) -> str:
        while True:
            default = f"SPEAKER_{self._numbered:02d}"
            self._numbered += 1
            if default not in self.centroids:
                break
        name = self.name_new(default, centroid) or default
        self.centroids[name] = np.zeros_like(centroid)
        return name


def in_pieces(
    audio: np.ndarray, bounds: list[int], sample_rate: int, diarize: Callable[[np.ndarray], Diarization], links: SpeakerLinks
) -> Iterator[DiarizedPiece]:
    """Each piece of `audio` between two of `bounds` (`cuts`) diarized by `diarize` and linked
    by `links`, in order."""
    for start, end in zip(bounds, bounds[1:]):
        found = links.link(diarize(audio[start:end]), start / sample_rate)
        yield DiarizedPiece(until=end / sample_rate, found=found)


def joined(pieces: Iterable[DiarizedPiece]) -> Diarization:
    """All the pieces' turns in one Diarization, with the file's final centroids."""
    turns: list[SpeakerTurn] = []
    exclusive: list[SpeakerTurn] = []
    embeddings: dict[str, list[float]] = {}
    for piece in pieces:
        turns += piece.found.turns
        exclusive += piece.found.exclusive
        embeddings = piece.found.embeddings
    return Diarization(turns, exclusive, embeddings)
