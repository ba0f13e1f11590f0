"""ExactCountClustering: as many speakers as asked, where pyannote's own cut gives fewer."""

from __future__ import annotations

import numpy as np
import pytest
from pyannote.audio.pipelines.clustering import AgglomerativeClustering

from serve_app.diarization.clustering import ExactCountClustering, count_exactly
from serve_app.diarization.pipeline import EMBEDDED_PARAMETERS


def clustering(kind: type[AgglomerativeClustering]) -> AgglomerativeClustering:
    made = kind(metric="cosine")
    made.instantiate(EMBEDDED_PARAMETERS["clustering"])
    return made


def voices(*directions: int, size: int = 1, seed: int = 0) -> np.ndarray:
    """`size` embeddings near each of the given axes of a 192-dimensional space."""
    rng = np.random.default_rng(seed)
    rows = [np.eye(192)[axis] + rng.normal(0, 0.01, 192) for axis in directions for _ in range(size)]
    return np.array(rows, dtype=np.float32)


def test_two_embeddings_asked_for_two_speakers_are_two() -> None:
    near = voices(0, 0, seed=1)  # one voice twice: pyannote's threshold would merge them
    assert len(set(clustering(AgglomerativeClustering).cluster(near.copy(), 2, 2, num_clusters=2))) == 1
    assert sorted(clustering(ExactCountClustering).cluster(near.copy(), 2, 2, num_clusters=2)) == [0, 1]


@pytest.mark.parametrize("asked", [None, 1, 2, 3])
def test_where_pyannote_gives_what_was_asked_nothing_changes(asked: int | None) -> None:
    three = voices(0, 1, 2, size=4)
    low = asked or 1
    theirs = clustering(AgglomerativeClustering).cluster(three.copy(), low, max(low, 3), num_clusters=asked)
    ours = clustering(ExactCountClustering).cluster(three.copy(), low, max(low, 3), num_clusters=asked)
    assert list(ours) == list(theirs)
    assert len(set(ours)) == (asked or 3)


def test_more_speakers_than_embeddings_cannot_be_made() -> None:
    one = voices(0, size=2)
    assert len(set(clustering(ExactCountClustering).cluster(one.copy(), 3, 3, num_clusters=3))) <= 2


def test_only_agglomerative_clustering_is_changed() -> None:
    plain = clustering(AgglomerativeClustering)
    count_exactly(plain)
    assert type(plain) is ExactCountClustering
    other = object()
    count_exactly(other)
    assert type(other) is object
