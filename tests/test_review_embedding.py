"""Embedding map with real EfficientNet-Lite0 features on crops of real photos (skimage.data): crops of Chelsea
the cat and of the coffee cup form two clusters, and a cat crop labelled "cup" is flagged."""

import numpy as np
import pytest
from skimage import data

from backend.core.ontology import Control, Ontology
from backend.review.embedding import neighbour_labels, project_2d, region_crops, sample_regions, embedding_map
from backend.review.export import read_export
from backend.models.imagenet import efficientnet_lite0_features
from tests.review_fixtures import regions, task

PHOTOS = {"chelsea": data.chelsea(), "coffee": data.coffee()}
CONTROL = Control("box", "RectangleLabels", "image", "image", ("cat", "cup"))
ONT = Ontology((CONTROL,))


@pytest.fixture(scope="module")
def features():
    return efficientnet_lite0_features()


def _boxes(photo, n, rng):
    """n random boxes covering 40-70 % of each side of the photo."""
    h, w = PHOTOS[photo].shape[:2]
    out = []
    for _ in range(n):
        bw, bh = rng.uniform(0.4, 0.7) * w, rng.uniform(0.4, 0.7) * h
        x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        out.append([x, y, x + bw, y + bh])
    return out


def _project(n_per_photo, mislabelled=1):
    """One task per crop (so loading is per task, as in Label Studio): cat crops of chelsea, cup crops of coffee;
    the first `mislabelled` chelsea crops are labelled cup."""
    rng = np.random.default_rng(0)
    tasks, i = [], 0
    for photo, label in (("chelsea", "cat"), ("coffee", "cup")):
        h, w = PHOTOS[photo].shape[:2]
        for j, box in enumerate(_boxes(photo, n_per_photo, rng)):
            i += 1
            given = "cup" if photo == "chelsea" and j < mislabelled else label
            tasks.append(task(i, regions([box], [given], (CONTROL,), size=(w, h)), image=f"skimage://{photo}"))
    return read_export(tasks, ONT)


def _load(t):
    return PHOTOS[t.image.split("//")[1]]


def test_two_clusters_and_the_mislabelled_crop_is_flagged(features):
    tasks = _project(20)
    result = embedding_map(tasks, _load, features, method="pca")
    assert (result["method"], result["n_embedded"], result["feature_dim"], result["images_failed"]) == ("pca", 40, 1280, 0)
    points = result["points"]
    xy = np.array([[p["x"], p["y"]] for p in points])
    photo = np.array([t.image.endswith("chelsea") for t in tasks])
    # two clusters in 2-D: every point is nearer its own photo's centroid than the other's
    c_cat, c_cup = xy[photo].mean(0), xy[~photo].mean(0)
    nearer_own = np.where(photo, np.linalg.norm(xy - c_cat, axis=1) < np.linalg.norm(xy - c_cup, axis=1),
                          np.linalg.norm(xy - c_cup, axis=1) < np.linalg.norm(xy - c_cat, axis=1))
    assert nearer_own.all()
    flagged = [p for p in points if p["flagged"]]
    assert [(p["task_id"], p["label"], p["neighbour_label"]) for p in flagged] == [(1, "cup", "cat")]
    assert flagged[0]["disagreement"] >= 0.9


def test_umap_when_installed(features):
    pytest.importorskip("umap")
    result = embedding_map(_project(30), _load, features, method="auto")
    assert result["method"] == "umap" and result["n_embedded"] == 60
    assert [p["task_id"] for p in result["points"] if p["flagged"]] == [1]


def test_bounded_sample_and_failed_images(features):
    tasks = _project(20)

    def load(t):
        if t.id == 40:
            raise OSError("image gone")
        return _load(t)

    result = embedding_map(tasks, load, features, max_regions=30)
    assert result["sampled"] and result["n_regions"] == 40 and result["images_failed"] <= 1
    assert result["n_embedded"] == 30 - result["images_failed"]
    assert {p["label"] for p in result["points"]} == {"cat", "cup"}


def test_a_single_label_flags_nothing():
    feats = np.random.default_rng(0).normal(size=(12, 8))
    tasks = read_export([task(i, regions([[0, 0, 10, 10]], ["cat"], (CONTROL,))) for i in range(1, 13)], ONT)
    result = embedding_map(tasks, lambda t: np.zeros((20, 20, 3), np.uint8), lambda crops: feats[:len(crops)])
    assert result["n_embedded"] == 12 and not any(p["flagged"] for p in result["points"])


CROPS = [
    # name, box, expected value at the crop's first / last sample along x (image value = x coordinate)
    ("whole image", [0, 0, 100, 100], 0.0, 99.0),
    ("left half", [0, 0, 50, 100], 0.0, 49.25),
    ("box past the border repeats the edge", [80, 0, 140, 100], 79.8, 99.0),
]


@pytest.mark.parametrize("name,box,first,last", CROPS, ids=[c[0] for c in CROPS])
def test_region_crops_sample_the_box(name, box, first, last):
    ramp = np.tile(np.arange(100, dtype=np.uint8)[None, :, None], (100, 1, 3))
    crop = region_crops(ramp, np.array([box], float), size=100, context=0.0)
    assert crop.shape == (1, 3, 100, 100) and crop.dtype == np.float32
    assert crop[0, 0, 50, 0] * 255 == pytest.approx(first, abs=0.6)
    assert crop[0, 0, 50, -1] * 255 == pytest.approx(last, abs=0.6)


def test_region_crops_rescale_boxes_from_the_export_size():
    ramp = np.tile(np.arange(100, dtype=np.uint8)[None, :, None], (100, 1, 3))
    a = region_crops(ramp, np.array([[0, 0, 25, 50]], float), boxes_image_size=(50, 50), size=16, context=0)
    b = region_crops(ramp, np.array([[0, 0, 50, 100]], float), size=16, context=0)
    np.testing.assert_allclose(a, b)


def test_sampling_keeps_rare_labels():
    rows = [{"label": "common"} for _ in range(500)] + [{"label": "rare"} for _ in range(5)]
    sample = sample_regions(rows, max_regions=50)
    assert len(sample) == 50 and sum(r["label"] == "rare" for r in sample) == 5


def test_neighbours_and_pca_shapes():
    f = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], float)
    share, common, nearest = neighbour_labels(f, ["a", "a", "b", "a"], k=1)
    assert share.tolist() == [0, 0, 1, 1] and common[2] == "a" and common[3] == "b" and common[0] is None
    coords, method = project_2d(f, "pca")
    assert coords.shape == (4, 2) and method == "pca"
