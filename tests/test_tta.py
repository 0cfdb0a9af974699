"""Test-time augmentation: dihedral views map boxes back pixel-exactly; weighted box fusion (table-driven);
a detector whose spec asks for views fuses them."""

import numpy as np
import pytest

from backend.models.tta import fuse, unview_boxes, view, view_boxes


def _bbox(image: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(image[..., 0])
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


@pytest.mark.parametrize("k", range(8))
def test_view_boxes_map_back_to_the_original_image(k):
    """A non-square image: the box found in view k, mapped back, is the original box (xyxy, exclusive max)."""
    image = np.zeros((60, 100, 3), np.uint8)
    image[5:25, 10:40] = 255
    seen = view(image, k)
    assert seen.shape == ((100, 60, 3) if k & 4 else (60, 100, 3)) and seen.flags.c_contiguous
    assert view_boxes(np.array([[10, 5, 40, 25]]), k, width=100, height=60).tolist() == [_bbox(seen)]
    back = unview_boxes(np.array([_bbox(seen)], np.float32), k, width=100, height=60)
    assert back.tolist() == [[10, 5, 40, 25]]


def _fused(boxes, scores, labels, views):
    out = fuse(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32), np.array(labels), views)
    return (out["boxes"].astype(float).round(2).tolist(), out["scores"].astype(float).round(3).tolist(),
            out["labels"].tolist())


@pytest.mark.parametrize("boxes,scores,labels,views,expected", [
    # the same box seen in both views: one box, full score
    ([[0, 0, 10, 10], [0, 0, 10, 10]], [0.8, 0.8], [1, 1], 2, ([[0, 0, 10, 10]], [0.8], [1])),
    # seen in one of four views: the score is damped to a quarter
    ([[0, 0, 10, 10]], [0.8], [1], 4, ([[0, 0, 10, 10]], [0.2], [1])),
    # overlapping boxes: score-weighted mean box
    ([[0, 0, 10, 10], [0, 0, 12, 10]], [0.9, 0.3], [1, 1], 2, ([[0, 0, 10.5, 10]], [0.6], [1])),
    # disjoint boxes stay apart, ordered by score
    ([[0, 0, 10, 10], [50, 50, 60, 60]], [0.3, 0.9], [1, 1], 2,
     ([[50, 50, 60, 60], [0, 0, 10, 10]], [0.45, 0.15], [1, 1])),
    # the same place with different labels is never fused
    ([[0, 0, 10, 10], [0, 0, 10, 10]], [0.8, 0.6], [1, 2], 2, ([[0, 0, 10, 10], [0, 0, 10, 10]], [0.4, 0.3], [1, 2])),
    # more members than views (duplicates within a view): only the best `views` scores count
    ([[0, 0, 10, 10]] * 3, [0.9, 0.8, 0.7], [1, 1, 1], 2, ([[0, 0, 10, 10]], [0.85], [1])),
    # a box without area (clipped to an edge) is a cluster of its own, never a NaN box
    ([[0, 0, 10, 10], [20, 5, 20, 9]], [0.8, 0.4], [1, 1], 2, ([[0, 0, 10, 10], [20, 5, 20, 9]], [0.4, 0.2], [1, 1])),
    ([], [], [], 8, ([], [], [])),
])
def test_fuse(boxes, scores, labels, views, expected):
    assert _fused(boxes, scores, labels, views) == expected


@pytest.mark.parametrize("boxes,size,expected", [
    ([[90, 0, 100.00001, 10]], (100, 50), [[90, 0, 100, 10]]),  # a float32 mean a hair past the right edge
    ([[-0.5, 40, 10, 50.2]], (100, 50), [[0, 40, 10, 50]]),
    ([[90, 0, 100.00001, 10]], None, [[90, 0, 100.00001, 10]]),  # no size: left as fused
])
def test_fuse_clips_to_the_image_it_is_given(boxes, size, expected):
    out = fuse(np.array(boxes, np.float32), np.ones(len(boxes), np.float32), np.ones(len(boxes), np.int64), 1,
               size=size)
    assert out["boxes"].dtype == np.float32
    assert out["boxes"].tolist() == np.array(expected, np.float32).tolist()


def test_spec_views_are_validated():
    from backend.models.detector import DetectorSpec

    with pytest.raises(ValueError, match="tta_views"):
        DetectorSpec(num_classes=1, tta_views=3)
