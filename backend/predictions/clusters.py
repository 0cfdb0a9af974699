"""Kinds of images in a project: k-means over image embeddings, so Label Studio's "Uncertainty sampling" can
spread annotators over kinds of images (it serves the least-solved cluster first, lowest score first within it).

A project's clusters are fitted once, by its first predict job, on the embeddings (`ImageEmbedder.embed`, unit
rows) of up to `SAMPLE_TASKS` of the tasks it predicts, with k = `cluster_count(n)` = min(8, max(1, n // 20)) for
n sampled tasks (so at least 20 tasks per cluster on average); they are fitted again when the project has grown to
twice the tasks the fit saw while that fit saw fewer than `SAMPLE_TASKS`. Each prediction's `cluster` is the
nearest centroid (cosine) of its task's first image. Stored at `MODEL_DIR/projects/<id>/clusters.npz`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.core.files import atomic_path

MAX_CLUSTERS = 8
TASKS_PER_CLUSTER = 20
SAMPLE_TASKS = 256


def cluster_count(n: int) -> int:
    """k for `n` sampled tasks: min(MAX_CLUSTERS, max(1, n // TASKS_PER_CLUSTER))."""
    return min(MAX_CLUSTERS, max(1, n // TASKS_PER_CLUSTER))


@dataclass(frozen=True)
class Clusters:
    """centroids: float32 (k, D) rows of unit length; tasks_seen: tasks the project had when they were fitted."""

    centroids: np.ndarray
    tasks_seen: int

    def assign(self, embeddings: np.ndarray) -> np.ndarray:
        """float (N, D) unit rows → int64 (N,) index of the nearest centroid (largest cosine)."""
        if len(embeddings) == 0:
            return np.zeros(0, np.int64)
        return np.argmax(np.asarray(embeddings, np.float32) @ self.centroids.T, axis=1).astype(np.int64)

    def stale(self, tasks_now: int) -> bool:
        """Whether to fit again: the project has at least twice the tasks and the fit saw fewer than a full sample."""
        return tasks_now >= 2 * self.tasks_seen and self.tasks_seen < SAMPLE_TASKS

    def save(self, path: Path) -> None:
        """Written atomically (readers in other processes never see a partial file)."""
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:  # a handle: np.savez would add ".npz" to a path
            np.savez(handle, centroids=self.centroids, tasks_seen=np.array(self.tasks_seen))


def fit_clusters(embeddings: np.ndarray, tasks_seen: int, seed: int = 0) -> Clusters:
    """k-means (k = `cluster_count(len(embeddings))`) on float (N, D) unit rows; centroids normalised to unit
    length."""
    from sklearn.cluster import KMeans

    embeddings = np.asarray(embeddings, np.float32)
    k = min(cluster_count(len(embeddings)), len(embeddings))
    if k <= 1:
        centroids = embeddings.mean(axis=0, keepdims=True)
    else:
        centroids = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(embeddings).cluster_centers_
    centroids = centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    return Clusters(centroids.astype(np.float32), int(tasks_seen))


def load_clusters(path: Path) -> Clusters | None:
    try:
        with np.load(path) as stored:
            return Clusters(stored["centroids"].astype(np.float32), int(stored["tasks_seen"]))
    except (OSError, KeyError, ValueError):
        return None


def sample_evenly(items: list, limit: int = SAMPLE_TASKS) -> list:
    """At most `limit` items spread evenly over `items` (all of them when there are fewer)."""
    if len(items) <= limit:
        return list(items)
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, limit).round()]
