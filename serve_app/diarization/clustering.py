"""pyannote's clustering, as the pipelines served here run it: as many speakers as asked when it
can, and a bound on the embeddings it links.

As many as asked. Asked for `num_speakers` (or `min_speakers`) k, pyannote's agglomerative
clustering cuts its dendrogram at merge after merge until k clusters remain, but never before
the first merge: k clusters out of exactly k embeddings are out of its reach, and it gives
fewer. That is what a short clip has: the sample call's first 12 s have two embeddings long
enough to cluster, and `num_speakers=2` came back as one speaker. `ExactCountClustering` then
cuts the same dendrogram into k clusters.

A bound. pyannote clusters the embeddings of the (chunk, speaker) pairs that speak enough on
their own (its `filter_embeddings`: the training set), by a hierarchical linkage over all their
pairwise distances, then assigns every pair to the nearest cluster's centroid. The linkage holds
N (N - 1) / 2 distances as float64, twice (scipy copies them), and N grows with the speech (one
or two embeddings a second of it): an hour of speech is about 200 MB, three hours about 2 GB.
Past `MAX_CLUSTERED` embeddings, an evenly spaced subset of them is clustered, and the others
are assigned to the centroids as pyannote assigns those it leaves out of the training set.
Under it, nothing changes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pyannote.audio.pipelines.clustering import AgglomerativeClustering
from scipy.cluster.hierarchy import fcluster, linkage

__all__ = ["MAX_CLUSTERED", "ExactCountClustering", "bound_clustering", "count_exactly"]


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


class ExactCountClustering(AgglomerativeClustering):
    """AgglomerativeClustering that gives `min_clusters` clusters whenever there are that many
    embeddings (see the module's docstring)."""

    def cluster(
        self,
        embeddings: np.ndarray,
        min_clusters: int | None = None,
        max_clusters: int | None = None,
        num_clusters: int | None = None,
    ) -> np.ndarray:
        clusters = super().cluster(embeddings, min_clusters, max_clusters, num_clusters=num_clusters)
        wanted = min_clusters or 1
        if len(np.unique(clusters)) < wanted <= len(embeddings):
            if self.metric == "cosine" and self.method in ("centroid", "median", "ward"):
                # pyannote may have normalised them in place already: normalising is idempotent.
                normalised = embeddings / np.linalg.norm(embeddings, axis=-1, keepdims=True)
                dendrogram = linkage(normalised, method=self.method, metric="euclidean")
            else:
                dendrogram = linkage(embeddings, method=self.method, metric=self.metric)
            clusters = fcluster(dendrogram, wanted, criterion="maxclust") - 1
        return clusters


def count_exactly(clustering: object) -> None:
    """Make a pipeline's AgglomerativeClustering an ExactCountClustering, in place; leave any
    other clustering (VBx, which takes the number of speakers its own way) as it is."""
    if type(clustering) is AgglomerativeClustering:
        clustering.__class__ = ExactCountClustering
