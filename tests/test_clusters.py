"""Kinds of images (`backend.predictions.clusters`): k, fitting, assignment, refit rule, storage; and real photos
of two kinds end up in two clusters through the real embedder."""

import numpy as np
import pytest
from skimage import data

from backend.adapters.embedder import ImageEmbedder
from backend.predictions.clusters import Clusters, cluster_count, fit_clusters, load_clusters, sample_evenly


@pytest.mark.parametrize("n, k", [(0, 1), (1, 1), (19, 1), (40, 2), (100, 5), (160, 8), (5000, 8)])
def test_cluster_count(n, k):
    assert cluster_count(n) == k


def blobs(per: int, centres: int, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    means = np.eye(dim)[:centres] * 5
    x = np.concatenate([m + rng.normal(0, 0.3, (per, dim)) for m in means]).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), np.repeat(np.arange(centres), per)


def test_fit_and_assign_recover_separated_groups():
    x, truth = blobs(20, 4)
    clusters = fit_clusters(x, tasks_seen=80)
    assert clusters.centroids.shape == (cluster_count(80), 16) == (4, 16)
    assigned = clusters.assign(x)
    for group in range(4):  # every true group lands in a cluster of its own
        assert len(set(assigned[truth == group])) == 1
    assert len(set(assigned)) == 4
    assert np.allclose(np.linalg.norm(clusters.centroids, axis=1), 1, atol=1e-5)


@pytest.mark.parametrize("seen, now, stale", [(40, 79, False), (40, 80, True), (256, 10_000, False), (1, 2, True)])
def test_refit_rule(seen, now, stale):
    assert Clusters(np.ones((1, 4), np.float32), seen).stale(now) is stale


def test_save_and_load(tmp_path):
    x, _ = blobs(20, 2)
    clusters = fit_clusters(x, 40)
    clusters.save(tmp_path / "p" / "clusters.npz")
    loaded = load_clusters(tmp_path / "p" / "clusters.npz")
    assert loaded.tasks_seen == 40 and np.array_equal(loaded.centroids, clusters.centroids)
    assert load_clusters(tmp_path / "missing.npz") is None


def test_sample_evenly():
    assert sample_evenly(list(range(5)), 10) == [0, 1, 2, 3, 4]
    picked = sample_evenly(list(range(1000)), 5)
    assert picked == [0, 250, 500, 749, 999]


def test_real_photos_of_two_kinds_fall_into_two_clusters():
    rng = np.random.default_rng(0)
    cats = [np.roll(data.chelsea(), int(s), axis=1) for s in rng.integers(0, 200, 20)]
    rockets = [np.roll(data.rocket(), int(s), axis=1) for s in rng.integers(0, 200, 20)]
    vectors = ImageEmbedder("cpu").embed(cats + rockets)
    clusters = fit_clusters(vectors, 40)
    assigned = clusters.assign(vectors)
    assert len(clusters.centroids) == 2
    assert len(set(assigned[:20])) == 1 and len(set(assigned[20:])) == 1 and assigned[0] != assigned[20]
