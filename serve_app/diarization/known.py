"""Known speakers: the Diarizer's anonymous speakers named after the voices a request enrolled.

A request may send up to MAX_KNOWN_SPEAKERS names, each with a 2-10 s recording of that voice
(OpenAI's `known_speaker_names[]` and `known_speaker_references[]`). Each recording is embedded
by the diarization pipeline's own speaker-embedding model (CAM++ for the embedded pipeline),
and compared with each speaker's centroid (`Diarization.embeddings`) by cosine similarity.
Pairs are taken best first, one name per speaker and one speaker per name, while their
similarity is at least KNOWN_SPEAKER_THRESHOLD; a speaker no reference matches keeps its
anonymous label.

Pure: numpy only; the Diarizer does the embedding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["KNOWN_SPEAKER_THRESHOLD", "MAX_KNOWN_SPEAKERS", "match_known_speakers", "similarities"]

MAX_KNOWN_SPEAKERS = 4
KNOWN_SPEAKER_THRESHOLD = 0.86
"""Cosine similarity between a reference's embedding and a speaker's centroid from which they
are taken to be the same voice. Measured with CAM++ on an espeak-ng dialogue of en-us+m3 and
en+f4 against 4.5 s references of other words: a voice against its own speaker 0.94 to 0.95;
against the other speaker, and other voices against either (en-us+m7, en+f2, en-gb+m1), 0.51
to 0.81. espeak's voices are one synthesizer and alike; real voices are further apart, but a
reference recorded apart from the audio also sits further from its own speaker (on the sample
call, Diane's own 1.6 s "This is Diane in New Jersey" scores 0.82 against her centroid), so
real enrolments may need a lower value than this one."""


def similarities(centroids: Sequence[ArrayLike], references: Sequence[ArrayLike]) -> np.ndarray:
    """(speakers, references) cosine similarities; 0 where either vector is all zeros; an
    empty array when either side has none."""
    a, b = np.asarray(centroids, dtype=np.float64), np.asarray(references, dtype=np.float64)
    if a.size == 0 or b.size == 0:  # before the reshapes, which cannot size an empty side
        return np.zeros((len(centroids), len(references)))
    a, b = a.reshape(len(centroids), -1), b.reshape(len(references), -1)
    a_norm = np.linalg.norm(a, axis=1, keepdims=True)
    b_norm = np.linalg.norm(b, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        result = (a / a_norm) @ (b / b_norm).T
    return np.nan_to_num(result, nan=0.0)


def match_known_speakers(
    embeddings: Mapping[str, ArrayLike],
    references: Mapping[str, ArrayLike],
    threshold: float = KNOWN_SPEAKER_THRESHOLD,
) -> dict[str, str]:
    """{speaker label: known name} for the speakers whose centroid matches a reference."""
    speakers, names = list(embeddings), list(references)
    if not speakers or not names:
        return {}
    scores = similarities([embeddings[s] for s in speakers], [references[n] for n in names])
    pairs = sorted(((scores[i, j], i, j) for i in range(len(speakers)) for j in range(len(names))), key=lambda pair: -pair[0])
    matched: dict[str, str] = {}
    taken: set[str] = set()
    for score, i, j in pairs:
        if score < threshold:
            break
        if speakers[i] in matched or names[j] in taken:
            continue
        matched[speakers[i]] = names[j]
        taken.add(names[j])
    return matched
