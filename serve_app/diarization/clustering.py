"""pyannote's agglomerative clustering, giving as many speakers as asked when it can.

Asked for `num_speakers` (or `min_speakers`) k, pyannote cuts its dendrogram at merge after merge
until k clusters remain, but never before the first merge: k clusters out of exactly k
embeddings are out of its reach, and it gives fewer. That is what a short clip has: the sample
call's first 12 s have two embeddings long enough to cluster, and `num_speakers=2` came back as
one speaker. `ExactCountClustering` then cuts the same dendrogram into k clusters.
"""

from __future__ import annotations

import numpy as np
from pyannote.audio.pipelines.clustering import AgglomerativeClustering
from scipy.cluster.hierarchy import fcluster, linkage

__all__ = ["ExactCountClustering", "count_exactly"]


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
        normalised = embeddings / np.linalg.norm(embeddings, axis=-1, keepdims=True)  # pyannote's is in place
        clusters = super().cluster(embeddings, min_clusters, max_clusters, num_clusters=num_clusters)
        wanted = min_clusters or 1
        if len(np.unique(clusters)) < wanted <= len(embeddings):
            if self.metric == "cosine" and self.method in ("centroid", "median", "ward"):
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
