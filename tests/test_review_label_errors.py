"""The label-error benchmark's injection and scoring rules (bench/label_errors.py), on synthetic tiles."""

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from label_errors import TILE, found, inject  # noqa: E402

from backend.core.detections import box_iou  # noqa: E402


def _items(n_tiles=10, per_tile=20, seed=0):
    rng = np.random.default_rng(seed)
    items = []
    for t in range(n_tiles):
        xy = rng.uniform(0, TILE - 60, (per_tile, 2))
        wh = rng.uniform(15, 60, (per_tile, 2))
        items.append((f"tile{t}", None, np.c_[xy, xy + wh].astype(np.float32)))
    return items


def test_one_class_injection():
    items = _items()
    corrupted, truth, errors = inject(items, "one-class", np.random.default_rng(1))
    assert Counter(e["kind"] for e in errors) == {"deleted": 20, "shifted": 20, "spurious": 20}
    assert sum(len(b) for b, _ in corrupted) == 200 - 20 + 20
    for e in errors:
        if e["kind"] == "shifted":
            moved, original = np.array(e["boxes"][0]), np.array(e["boxes"][1])
            size = original[2:] - original[:2]
            assert (np.abs(moved[:2] - original[:2]) >= 0.5 * size - 1e-3).any()  # by at least half its size
            assert moved.min() >= -1e-3 and moved.max() <= TILE + 1e-3
            assert np.allclose(moved[2:] - moved[:2], size, atol=1e-3)
        if e["kind"] == "spurious":
            assert box_iou(np.array(e["boxes"]), items[e["tile"]][2]).max() < 0.1
        if e["kind"] == "deleted":
            remaining = corrupted[e["tile"]][0]
            assert not np.isclose(remaining, e["boxes"][0]).all(axis=1).any()


def test_two_class_injection_swaps_ten_percent():
    items = _items()
    corrupted, truth, errors = inject(items, "two-class", np.random.default_rng(1))
    assert Counter(e["kind"] for e in errors) == {"swapped": 20}
    changed = sum(a != b for (_, labels), t in zip(corrupted, truth) for a, b in zip(labels, t))
    assert changed == 20 and {l for t in truth for l in t} == {"small", "large"}


FOUND = [
    ("same box on the same tile", (0, [[10, 10, 50, 50]]), True),
    ("slightly off (IoU 0.68)", (0, [[18, 10, 58, 50]]), True),
    ("half off (IoU 0.33)", (0, [[30, 10, 70, 50]]), False),
    ("another tile", (1, [[10, 10, 50, 50]]), False),
    ("one of several boxes matches", (0, [[200, 200, 220, 220], [10, 10, 50, 50]]), True),
]


@pytest.mark.parametrize("name,flagged,expected", FOUND, ids=[c[0] for c in FOUND])
def test_found(name, flagged, expected):
    errors = [{"kind": "deleted", "tile": 0, "boxes": [[10, 10, 50, 50]]}]
    assert found(errors, [flagged]) == [expected]
