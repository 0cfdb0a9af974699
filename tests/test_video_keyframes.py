"""Keyframe reduction (fewest keyframes within an IoU tolerance, `enabled: false` at ends and gaps) and Label
Studio's interpolation of keyframes, checked against Label Studio's own SDK implementation."""

import itertools

import numpy as np
import pytest
from label_studio_sdk._extensions.label_studio_tools.postprocessing.video import extract_key_frames

from backend.labelstudio.keyframes import (Keyframes, interpolate_keyframes, pairwise_iou, reduce_keyframes,
                                           sequence_keyframes)


def boxes_at(frames, position, size=(60, 40)):
    """position(f) → (x, y) top-left; float (K, 4) boxes of `size` (width, height)."""
    xy = np.array([position(int(f)) for f in frames], np.float64).reshape(-1, 2)
    return np.concatenate([xy, xy + size], axis=1)


def stop_and_go(f):
    """Right until 30, still until 60, down afterwards."""
    if f <= 30:
        return 10 + 4 * f, 50
    if f <= 60:
        return 130, 50
    return 130, 50 + 3 * (f - 60)


CASES = [
    # name, frames, position, max_gap, expected keyframes, expected enabled
    ("constant motion", range(100), lambda f: (5 + 2.5 * f, 40 + f), 1, [0, 99], [True, False]),
    ("standing still", range(50), lambda f: (100, 100), 1, [0, 49], [True, False]),
    ("constant motion, every 5th frame", range(0, 100, 5), lambda f: (5 + 2.5 * f, 40), 5, [0, 95], [True, False]),
    ("stop and go", range(100), stop_and_go, 1, [0, 30, 60, 99], [True, True, True, False]),
    ("stop and go, every 5th frame", range(0, 100, 5), stop_and_go, 5, [0, 30, 60, 95], [True, True, True, False]),
    ("a gap", [*range(0, 20), *range(35, 60)], lambda f: (5 + 2 * f, 40), 1, [0, 19, 35, 59],
     [True, False, True, False]),
    ("a gap, sampled, gap longer than allowed", [*range(0, 40, 5), *range(60, 100, 5)], lambda f: (2 * f, 40), 10,
     [0, 35, 60, 95], [True, False, True, False]),
    ("a missed sample within max_gap is interpolated", [0, 5, 10, 20, 25, 30], lambda f: (2 * f, 40), 10, [0, 30],
     [True, False]),
    ("one detection", [7], lambda f: (0, 0), 1, [7], [False]),
    ("one detection after a gap", [0, 1, 2, 3, 10], lambda f: (3 * f, 0), 1, [0, 3, 10], [True, False, False]),
]


@pytest.mark.parametrize("name,frames,position,max_gap,expected,enabled", CASES, ids=[c[0] for c in CASES])
def test_reduction(name, frames, position, max_gap, expected, enabled):
    frames = np.array(list(frames))
    boxes = boxes_at(frames, position)
    kf = reduce_keyframes(frames, boxes, min_iou=0.9, max_gap=max_gap)
    assert list(kf.frames) == expected
    assert list(kf.enabled) == enabled
    np.testing.assert_allclose(kf.xyxy, boxes[np.searchsorted(frames, kf.frames)], atol=1e-4)
    _assert_within_tolerance(kf, frames, boxes, 0.9)


def _assert_within_tolerance(kf: Keyframes, frames, boxes, min_iou):
    shown, shown_boxes, _ = interpolate_keyframes(kf)
    at = {int(f): b for f, b in zip(shown, shown_boxes)}
    assert set(int(f) for f in frames) <= set(at), "a tracked frame is not shown"
    ious = pairwise_iou(np.array([at[int(f)] for f in frames]), boxes)
    assert ious.min() >= min_iou - 1e-6


def random_walk(rng, n, step=6.0, size=50.0):
    xy = np.cumsum(rng.normal(0, step, (n, 2)), axis=0) + 200
    wh = size + np.cumsum(rng.normal(0, 1.0, (n, 2)), axis=0).clip(-20, 20)
    return np.concatenate([xy, xy + wh], axis=1)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("min_iou", [0.5, 0.8, 0.9, 0.95])
def test_tolerance_is_kept_on_every_frame(seed, min_iou):
    rng = np.random.default_rng(seed)
    frames = np.cumsum(rng.integers(1, 4, 150))
    boxes = random_walk(rng, len(frames), step=2.0)
    kf = reduce_keyframes(frames, boxes, min_iou=min_iou, max_gap=3)
    assert kf.frames[0] == frames[0] and kf.frames[-1] == frames[-1] and not kf.enabled[-1]
    assert len(kf) < len(frames)
    _assert_within_tolerance(kf, frames, boxes, min_iou)


def _fewest_by_brute_force(frames, boxes, min_iou):
    n = len(frames)
    for size in range(2, n + 1):
        for inner in itertools.combinations(range(1, n - 1), size - 2):
            chosen = [0, *inner, n - 1]
            kf = Keyframes(frames[chosen], boxes[chosen], [True] * (size - 1) + [False])
            shown, shown_boxes, _ = interpolate_keyframes(kf)
            if pairwise_iou(shown_boxes[np.searchsorted(shown, frames)], boxes).min() >= min_iou:
                return size
    raise AssertionError("unreachable: all frames as keyframes always fit")


@pytest.mark.parametrize("seed", range(12))
def test_fewest_keyframes(seed):
    rng = np.random.default_rng(100 + seed)
    frames = np.cumsum(rng.integers(1, 3, 10))
    boxes = random_walk(rng, len(frames), step=4.0)
    kf = reduce_keyframes(frames, boxes, min_iou=0.85, max_gap=2)
    assert len(kf) == _fewest_by_brute_force(frames, boxes, 0.85)


def test_long_tracks_are_reduced_quickly_within_tolerance():
    frames = np.arange(2000)
    boxes = boxes_at(frames, lambda f: (300 + 200 * np.sin(f / 80), 200 + 100 * np.cos(f / 50)))
    kf = reduce_keyframes(frames, boxes, min_iou=0.9, max_gap=1)
    assert 10 < len(kf) < 200
    _assert_within_tolerance(kf, frames, boxes, 0.9)


def test_reduction_rejects_bad_input():
    with pytest.raises(ValueError, match="strictly increasing"):
        reduce_keyframes([0, 2, 2], np.zeros((3, 4)))
    with pytest.raises(ValueError, match="3 frames but 2 boxes"):
        reduce_keyframes([0, 1, 2], np.zeros((2, 4)))
    assert len(reduce_keyframes([], np.zeros((0, 4)))) == 0


def seq(*items):
    """(frame 1-based, x, y, w, h, enabled[, rotation]) → a Label Studio sequence."""
    out = []
    for frame, x, y, w, h, enabled, *rotation in items:
        out.append({"frame": frame, "time": (frame - 1) / 25, "x": x, "y": y, "width": w, "height": h,
                    "rotation": rotation[0] if rotation else 0, "enabled": enabled})
    return out


INTERPOLATION = [
    # name, sequence, last frame (0-based), expected {frame 0-based: (x, y, w, h)}
    ("enabled then disabled: linear, shown on the disabled keyframe, hidden after",
     seq((1, 0, 0, 10, 10, True), (5, 40, 20, 10, 30, False)), 9,
     {0: (0, 0, 10, 10), 1: (10, 5, 10, 15), 2: (20, 10, 10, 20), 3: (30, 15, 10, 25), 4: (40, 20, 10, 30)}),
    ("last keyframe enabled: held until the last frame",
     seq((3, 10, 10, 5, 5, True)), 5, {2: (10, 10, 5, 5), 3: (10, 10, 5, 5), 4: (10, 10, 5, 5), 5: (10, 10, 5, 5)}),
    ("disabled keyframe hides the box until the next keyframe",
     seq((1, 0, 0, 10, 10, True), (2, 2, 0, 10, 10, False), (5, 50, 50, 10, 10, True), (6, 60, 50, 10, 10, False)), 9,
     {0: (0, 0, 10, 10), 1: (2, 0, 10, 10), 4: (50, 50, 10, 10), 5: (60, 50, 10, 10)}),
    ("unsorted and missing enabled/rotation", [
        {"frame": 3, "x": 20, "y": 0, "width": 10, "height": 10, "enabled": False, "time": 0.08},
        {"frame": 1, "x": 0, "y": 0, "width": 10, "height": 10, "time": 0}], None,
     {0: (0, 0, 10, 10), 1: (10, 0, 10, 10), 2: (20, 0, 10, 10)}),
]


@pytest.mark.parametrize("name,sequence,last_frame,expected", INTERPOLATION, ids=[c[0] for c in INTERPOLATION])
def test_label_studio_interpolation(name, sequence, last_frame, expected):
    frames, xyxy, _ = interpolate_keyframes(sequence_keyframes(sequence), last_frame)
    assert list(frames) == sorted(expected)
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
    np.testing.assert_allclose(xywh, [expected[f] for f in sorted(expected)], atol=1e-4)


def test_rotation_goes_the_shorter_way_round():
    sequence = seq((1, 10, 10, 10, 10, True, 170), (3, 10, 10, 10, 10, False, -170))
    _, _, rotation = interpolate_keyframes(sequence_keyframes(sequence))
    assert list(rotation) == pytest.approx([170, 180, -170])


@pytest.mark.parametrize("seed", range(20))
def test_interpolation_agrees_with_label_studio_sdk(seed):
    """Label Studio's SDK (`extract_key_frames`, used by its exports) expands keyframes the same way."""
    rng = np.random.default_rng(seed)
    frames = np.sort(rng.choice(np.arange(1, 60), size=rng.integers(1, 8), replace=False))
    sequence = seq(*[(int(f), *rng.uniform(0, 60, 2).round(3), *rng.uniform(1, 30, 2).round(3), bool(rng.random() < 0.6))
                     for f in frames])
    frames_count = int(frames[-1] + rng.integers(0, 10))
    region = {"type": "videorectangle", "value": {"sequence": sequence, "framesCount": frames_count, "duration": 3.0}}
    (expanded,) = extract_key_frames([region])
    sdk = {item["frame"] - 1: (item["x"], item["y"], item["width"], item["height"]) for item in expanded["value"]["sequence"]}
    ours, xyxy, _ = interpolate_keyframes(sequence_keyframes(sequence), last_frame=frames_count - 1)
    assert list(ours) == sorted(sdk)
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
    np.testing.assert_allclose(xywh, [sdk[f] for f in ours], atol=1e-3)


@pytest.mark.parametrize("item,message", [
    ({"frame": 0, "x": 1, "y": 1, "width": 1, "height": 1}, "1-based"),
    ({"frame": 2, "x": "a", "y": 1, "width": 1, "height": 1}, "keyframe 0 is malformed"),
    ({"frame": 2, "y": 1, "width": 1, "height": 1}, "keyframe 0 is malformed"),
    ({"frame": 2, "x": float("nan"), "y": 1, "width": 1, "height": 1}, "non-finite"),
])
def test_malformed_sequences(item, message):
    with pytest.raises(ValueError, match=message):
        sequence_keyframes([item])
