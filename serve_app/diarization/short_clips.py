"""Speakers of a short clip clustered again, turn by turn.

pyannote clusters one embedding per (10 s chunk, local speaker): a short clip has few chunks, and
the segmentation model can give one local speaker the voices of two people who take turns
inside a chunk. On the sample call's first 12 s (three chunks), every local speaker mixed Diane
and Sheila, so that no clustering of them could tell the two apart, even told there are two.
The places where the speaker changes are what the segmentation gets right there. So in a short
clip each turn long enough to embed gets an embedding of its own, and the turns, not the
chunks' local speakers, are clustered into as many speakers as pyannote found; those clusters
are kept where their turns sound more alike than pyannote's speakers' (MARGIN).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage

from serve_app.diarization.speakers import Diarization, SpeakerTurn
from serve_app.engine.audio import SAMPLE_RATE

__all__ = ["SHORT_CLIP_S", "by_turns"]

SHORT_CLIP_S = 20.0
"""Clips shorter than this (eleven chunks of 10 s, 1 s apart) are clustered by turns: measured
on clips of 12 to 19 s (MARGIN). Longer ones, the whole 30 s sample call among them (DER 0.052),
keep pyannote's own clustering, which has embeddings enough there."""
CLUSTERED_TURN_S = 0.4
"""Turns at least this long are clustered; shorter ones go to the nearest speaker's centroid."""
MARGIN = 0.02
"""The turns' clusters replace pyannote's speakers only where they sound this much more alike
(`_cohesion`, 0 to 1). On twelve windows of 12 to 18 s of the sample call: on its first 12 s,
0.877 against 0.835 (DER 0.554 to 0.205 with num_speakers=2); where pyannote's speakers were
right, the turns' clusters were as alike or up to 0.004 more (the same DER), or less (0.03 to
0.06: an outlier turn alone, and DER 0.05-0.09 would have become 0.30-0.37). Then on 35
windows of 12 to 19 s of three espeak-ng dialogues (2 and 3 voices), not used to choose it:
one changed, for the better (0.207 to 0.024 with num_speakers=3), and none for the worse."""
EMBEDDED_TURN_S = 0.2
"""Turns shorter than this are too short to embed: they take the speaker of the nearest turn
pyannote gave the same label."""


def by_turns(audio: np.ndarray, found: Diarization, embed: Callable[[np.ndarray], np.ndarray]) -> Diarization:
    """`found` with its speakers clustered again by turns (average linkage of cosine distances),
    as many as it has; `found` as it is when the clip is not short, has one speaker, its turns
    do not make as many clusters, or they sound no more alike that way."""
    speakers = len(found.embeddings)
    if len(audio) >= SHORT_CLIP_S * SAMPLE_RATE or speakers < 2:
        return found
    embedded = [turn for turn in found.turns if turn.end - turn.start >= EMBEDDED_TURN_S]
    vectors = {turn: _unit(embed(audio[int(turn.start * SAMPLE_RATE) : int(turn.end * SAMPLE_RATE)])) for turn in embedded}
    clustered = [turn for turn in embedded if turn.end - turn.start >= CLUSTERED_TURN_S]
    if len(clustered) < speakers:
        return found
    labels = fcluster(linkage(np.stack([vectors[t] for t in clustered]), method="average", metric="cosine"), speakers, "maxclust")
    if len(set(labels)) < speakers:
        return found
    if _cohesion(clustered, list(labels), vectors) < _cohesion(clustered, [t.speaker for t in clustered], vectors) + MARGIN:
        return found
    centroids = {
        label: _unit(np.mean([vectors[t] for t, c in zip(clustered, labels) if c == label], axis=0)) for label in set(labels)
    }
    cluster = dict(zip(clustered, labels))
    for turn in embedded:
        cluster.setdefault(turn, max(centroids, key=lambda label: float(centroids[label] @ vectors[turn])))
    for turn in found.turns:
        if turn not in cluster:
            same = [other for other in cluster if other.speaker == turn.speaker] or list(cluster)
            cluster[turn] = cluster[min(same, key=lambda other: _apart(turn, other))]
    names: dict[int, str] = {}
    for turn in sorted(found.turns, key=lambda turn: (turn.start, turn.end)):
        names.setdefault(cluster[turn], f"SPEAKER_{len(names):02d}")

    def within(piece: SpeakerTurn) -> SpeakerTurn:
        """The turn of `found.turns` an exclusive turn was cut from."""
        mine = [turn for turn in found.turns if turn.speaker == piece.speaker] or found.turns
        return max(mine, key=lambda turn: min(turn.end, piece.end) - max(turn.start, piece.start))

    return Diarization(
        turns=_merged([SpeakerTurn(t.start, t.end, names[cluster[t]]) for t in found.turns]),
        exclusive=_merged([SpeakerTurn(t.start, t.end, names[cluster[within(t)]]) for t in found.exclusive]),
        embeddings={names[label]: [float(x) for x in centroid] for label, centroid in centroids.items()},
    )


def _unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float64).ravel()
    norm = np.linalg.norm(vector)
    return vector / norm if norm else vector


def _apart(a: SpeakerTurn, b: SpeakerTurn) -> float:
    return max(0.0, a.start - b.end, b.start - a.end)


def _merged(turns: list[SpeakerTurn]) -> list[SpeakerTurn]:
    """The turns in time order, a speaker's overlapping or touching turns made one."""
    merged: list[SpeakerTurn] = []
    for turn in sorted(turns, key=lambda turn: (turn.start, turn.end)):
        same = next((i for i in range(len(merged) - 1, -1, -1) if merged[i].speaker == turn.speaker), None)
        if same is not None and turn.start <= merged[same].end:
            merged[same] = SpeakerTurn(merged[same].start, max(merged[same].end, turn.end), turn.speaker)
        else:
            merged.append(turn)
    return merged


def _cohesion(turns: list[SpeakerTurn], labels: list, vectors: dict[SpeakerTurn, np.ndarray]) -> float:
    """How alike each speaker's turns sound: the mean cosine similarity of a turn's embedding
    to its speaker's centroid, weighted by the turns' lengths (centroids weighted alike)."""
    total = 0.0
    for label in set(labels):
        mine = [turn for turn, other in zip(turns, labels) if other == label]
        centroid = _unit(np.sum([(turn.end - turn.start) * vectors[turn] for turn in mine], axis=0))
        total += sum((turn.end - turn.start) * float(vectors[turn] @ centroid) for turn in mine)
    return total / sum(turn.end - turn.start for turn in turns)
