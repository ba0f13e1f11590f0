"""A bound on the embeddings pyannote's clustering links, so that its memory stops growing with
the audio's length.

pyannote clusters the embeddings of the (chunk, speaker) pairs that speak enough on their own
(its `filter_embeddings`: the training set), by a hierarchical linkage over all their pairwise
distances, then assigns every pair to the nearest cluster's centroid. The linkage holds
N (N - 1) / 2 distances as float64, twice (scipy copies them), and N grows with the speech (one
or two embeddings a second of it): an hour of speech is about 200 MB, three hours about 2 GB. Past `MAX_CLUSTERED` embeddings, an
evenly spaced subset of them is clustered, and the others are assigned to the centroids as
pyannote assigns those it leaves out of the training set. Under it, nothing changes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["MAX_CLUSTERED", "bound_clustering"]

MAX_CLUSTERED = 5000
"""Embeddings the linkage holds at most: 5000 are 100 MB of distances, twice. Every k-th of N
kept (k = N / 5000), a speaker's cluster needs k times `min_cluster_size` of their embeddings (12
for the embedded pipeline) to stay a speaker of its own rather than go to the nearest larger one."""


def bound_clustering(clustering: Any, *, most: int = MAX_CLUSTERED) -> None:
    """Make `clustering` (a pyannote pipeline's) cluster at most `most` embeddings (see the
    module's docstring)."""
    select = clustering.filter_embeddings

    def filter_embeddings(embeddings: np.ndarray, *args: Any, **kwargs: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        train, chunks, speakers = select(embeddings, *args, **kwargs)
        if len(train) <= most:
            return train, chunks, speakers
        kept = np.linspace(0, len(train) - 1, most).round().astype(int)
        return train[kept], chunks[kept], speakers[kept]

    object.__setattr__(clustering, "filter_embeddings", filter_embeddings)
