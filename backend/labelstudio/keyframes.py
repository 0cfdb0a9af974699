"""Keyframes of one video box, as Label Studio's video editor interpolates them (1.23, `VideoRectangle`).

Label Studio's rules (editor `regions/VideoRegion.js` `isInLifespan`, `regions/VideoRectangleRegion.js`
`getShape`, `utils/props.ts` `interpolateProp`; the SDK's `postprocessing/video.py` `extract_key_frames` agrees):
- before the first keyframe the box is not shown;
- at a keyframe's own frame the box is that keyframe's box, also when the keyframe has ``enabled: false``;
- after a keyframe with ``enabled: true`` the box is interpolated linearly (x, y, width, height; rotation along
  the shorter way round) towards the next keyframe, or held until the end of the video after the last one;
- after a keyframe with ``enabled: false`` the box is hidden until the next keyframe.

Here frames are 0-based indices and boxes are xyxy in whatever units the caller uses (linear interpolation and IoU
do not depend on scaling x and y); `sequence_keyframes` reads Label Studio's 1-based, percent sequence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

EXACT_LIMIT = 400  # runs with more boxes than this are reduced greedily
END_BATCH = 32  # line ends tried at once
PATIENCE = 32  # a line start stops looking further after this many failing ends in a row


@dataclass(frozen=True)
class Keyframes:
    """Keyframes of one box.

    Attributes:
        frames: int64 (M,) 0-based frame indices, strictly increasing.
        xyxy: float32 (M, 4) boxes (x_min, y_min, x_max, y_max), pixels or percent.
        enabled: bool (M,) Label Studio's `enabled`: False hides the box after this frame until the next keyframe.
        rotation: float32 (M,) Label Studio rotation in degrees (clockwise on screen, about (x_min, y_min)).
    """

    frames: np.ndarray
    xyxy: np.ndarray
    enabled: np.ndarray
    rotation: np.ndarray = field(default=None)

    def __post_init__(self) -> None:
        frames = np.asarray(self.frames, np.int64).reshape(-1)
        n = len(frames)
        xyxy = np.asarray(self.xyxy, np.float32).reshape(-1, 4)
        enabled = np.asarray(self.enabled, bool).reshape(-1)
        rotation = np.zeros(n) if self.rotation is None else self.rotation
        rotation = np.asarray(rotation, np.float32).reshape(-1)
        if not (len(xyxy) == len(enabled) == len(rotation) == n):
            raise ValueError(f"Keyframes: {n} frames, {len(xyxy)} boxes, {len(enabled)} enabled, "
                             f"{len(rotation)} rotations")
        if n and np.any(np.diff(frames) <= 0):
            raise ValueError("Keyframes: frames must be strictly increasing")
        for name, value in (("frames", frames), ("xyxy", xyxy), ("enabled", enabled), ("rotation", rotation)):
            object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return len(self.frames)


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a[..., 4] and b[..., 4] element by element (broadcast) → float64 (...)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    w = (np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])).clip(min=0)
    h = (np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])).clip(min=0)
    inter = w * h
    area = lambda x: (x[..., 2] - x[..., 0]).clip(min=0) * (x[..., 3] - x[..., 1]).clip(min=0)  # noqa: E731
    union = area(a) + area(b) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 1.0)


def reduce_keyframes(frames: np.ndarray, xyxy: np.ndarray, min_iou: float = 0.9, max_gap: int = 1) -> Keyframes:
    """The fewest keyframes whose Label Studio interpolation stays within `min_iou` of every given box.

    Args:
        frames: int (K,) 0-based frames with a box, strictly increasing (a track's detections).
        xyxy: float (K, 4) the box at each of those frames.
        min_iou: at every frame in `frames`, the interpolated box has at least this IoU with the given box.
        max_gap: consecutive frames further apart than this are a gap: the box ends (``enabled: false``) at the
            frame before the gap and starts again after it. Use at least the sampling step.

    Returns:
        Keyframes at a subset of `frames` with their given boxes; each run without a gap starts with an enabled
        keyframe and ends with a disabled one (a run of one frame is a single disabled keyframe). Among the
        fewest keyframes, the choice whose worst IoU is highest (so turning points of piecewise-linear motion
        land exactly). The search (dynamic programming over lines between boxes) gives up on a line start after
        `PATIENCE` failing ends in a row; runs longer than `EXACT_LIMIT` boxes are reduced greedily (farthest
        reachable keyframe each time). Either way the tolerance holds on every frame.
    """
    frames = np.asarray(frames, np.int64).reshape(-1)
    boxes = np.asarray(xyxy, np.float64).reshape(-1, 4)
    if len(frames) != len(boxes):
        raise ValueError(f"{len(frames)} frames but {len(boxes)} boxes")
    if len(frames) == 0:
        return Keyframes(np.zeros(0, np.int64), np.zeros((0, 4), np.float32), np.zeros(0, bool))
    if np.any(np.diff(frames) <= 0):
        raise ValueError("frames must be strictly increasing")
    cuts = np.flatnonzero(np.diff(frames) > max_gap) + 1
    keep: list[int] = []
    enabled: list[bool] = []
    for run in np.split(np.arange(len(frames)), cuts):
        chosen = _reduce_run(frames[run], boxes[run], min_iou)
        keep.extend(int(run[i]) for i in chosen)
        enabled.extend([True] * (len(chosen) - 1) + [False])
    return Keyframes(frames[keep], boxes[keep].astype(np.float32), np.array(enabled, bool))


def _segment_min_iou(frames: np.ndarray, boxes: np.ndarray, i: int, j0: int, j1: int) -> np.ndarray:
    """For each j in [j0, j1): worst IoU, over the frames strictly between i and j, of the line from box i to box j."""
    js = np.arange(j0, j1)
    ms = np.arange(i + 1, j1 - 1)
    if len(ms) == 0:
        return np.ones(len(js))
    span = (frames[js] - frames[i]).astype(np.float64)[:, None]                 # (J, 1)
    t = (frames[ms] - frames[i]).astype(np.float64)[None, :] / span             # (J, M)
    line = boxes[i] + t[..., None] * (boxes[js][:, None, :] - boxes[i])          # (J, M, 4)
    iou = pairwise_iou(line, boxes[ms][None, :, :])
    iou[ms[None, :] >= js[:, None]] = 1.0
    return iou.min(axis=1)


def _reachable(frames: np.ndarray, boxes: np.ndarray, i: int, min_iou: float):
    """(ends j, worst IoU of the line i → j) for every end j > i whose line keeps `min_iou` on all frames between.

    Ends are tried in chunks of `END_BATCH` and the search stops after `PATIENCE` ends in a row fail (a line that
    misses the boxes that far does not come back in practice)."""
    n = len(frames)
    ends, worst = [], []
    misses, j0 = 0, i + 1
    while j0 < n and misses < PATIENCE:
        j1 = min(n, j0 + END_BATCH)
        seg = _segment_min_iou(frames, boxes, i, j0, j1)
        ok = seg >= min_iou - 1e-9
        ends.append(np.arange(j0, j1)[ok])
        worst.append(seg[ok])
        misses = misses + len(ok) if not ok.any() else len(ok) - 1 - int(np.flatnonzero(ok)[-1])
        j0 = j1
    return np.concatenate(ends), np.concatenate(worst)


def _reduce_run(frames: np.ndarray, boxes: np.ndarray, min_iou: float) -> list[int]:
    """Indices of the keyframes of one run (first and last always), fewest first, then the best worst IoU."""
    n = len(frames)
    if n <= 2 or _segment_min_iou(frames, boxes, 0, n - 1, n)[0] >= min_iou - 1e-9:
        return [0] if n == 1 else [0, n - 1]
    if n > EXACT_LIMIT:
        return _greedy_run(frames, boxes, min_iou)
    count = np.full(n, n + 1)
    worst = np.full(n, -1.0)
    previous = np.full(n, -1)
    count[0], worst[0] = 1, 1.0
    for i in range(n - 1):
        ends, seg = _reachable(frames, boxes, i, min_iou)
        cand_count, cand_worst = count[i] + 1, np.minimum(worst[i], seg)
        better = (cand_count < count[ends]) | ((cand_count == count[ends]) & (cand_worst > worst[ends]))
        ends, cand_worst = ends[better], cand_worst[better]
        count[ends], worst[ends], previous[ends] = cand_count, cand_worst, i
    chosen = [n - 1]
    while chosen[-1] != 0:
        chosen.append(int(previous[chosen[-1]]))
    return chosen[::-1]


def _greedy_run(frames: np.ndarray, boxes: np.ndarray, min_iou: float) -> list[int]:
    """From each keyframe, the farthest reachable end (the next keyframe is always reachable)."""
    chosen = [0]
    while chosen[-1] < len(frames) - 1:
        ends, _ = _reachable(frames, boxes, chosen[-1], min_iou)
        chosen.append(int(ends.max()))
    return chosen


def interpolate_keyframes(keyframes: Keyframes, last_frame: int | None = None
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every frame where Label Studio shows the box, with the box it shows.

    Args:
        keyframes: the box's keyframes.
        last_frame: 0-based index of the video's last frame: after an enabled last keyframe the box is held until
            then. None: nothing is shown after the last keyframe.

    Returns:
        frames int64 (K,) 0-based, increasing; xyxy float32 (K, 4) in the keyframes' units; rotation float32 (K,).
    """
    out_frames, out_boxes, out_rot = [], [], []
    kf = keyframes
    for n in range(len(kf)):
        start = int(kf.frames[n])
        if not kf.enabled[n]:
            out_frames.append(np.array([start]))
            out_boxes.append(kf.xyxy[n:n + 1].astype(np.float64))
            out_rot.append(kf.rotation[n:n + 1].astype(np.float64))
            continue
        if n + 1 < len(kf):
            end = int(kf.frames[n + 1])
            span = np.arange(start, end)
            t = (span - start) / (end - start)
            boxes = kf.xyxy[n] + t[:, None] * (kf.xyxy[n + 1].astype(np.float64) - kf.xyxy[n])
            turn = _normalize_angle(float(kf.rotation[n + 1]) - float(kf.rotation[n]))
            rot = _normalize_angle(kf.rotation[n] + turn * t)
        else:
            end = max(start, last_frame) + 1 if last_frame is not None else start + 1
            span = np.arange(start, end)
            boxes = np.repeat(kf.xyxy[n:n + 1].astype(np.float64), len(span), axis=0)
            rot = np.full(len(span), float(kf.rotation[n]))
        out_frames.append(span)
        out_boxes.append(boxes)
        out_rot.append(rot)
    if not out_frames:
        return np.zeros(0, np.int64), np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    return (np.concatenate(out_frames).astype(np.int64), np.concatenate(out_boxes).astype(np.float32),
            np.concatenate(out_rot).astype(np.float32))


def _normalize_angle(angle):
    """Label Studio's `normalizeAngle`: the same angle in (-180, 180]."""
    a = np.asarray(angle, np.float64)
    return 180.0 - np.mod(180.0 - a, 360.0)


def sequence_keyframes(sequence: list[dict]) -> Keyframes:
    """A `videorectangle` value's `sequence` → `Keyframes` with 0-based frames and xyxy in PERCENT of the frame.

    Keyframes are sorted by frame; of two at the same frame the later in the list wins (as an edit would).
    `enabled` defaults to True and `rotation` to 0. Raises ValueError naming the keyframe when one is malformed.
    """
    by_frame: dict[int, dict] = {}
    for n, item in enumerate(sequence or []):
        try:
            frame = int(item["frame"])
            x, y, w, h = (float(item[k]) for k in ("x", "y", "width", "height"))
            rotation = float(item.get("rotation") or 0.0)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"keyframe {n} is malformed: {exc!r}") from None
        if frame < 1 or not np.isfinite([x, y, w, h, rotation]).all():
            raise ValueError(f"keyframe {n} has frame {frame} (1-based) or non-finite coordinates")
        by_frame[frame] = {"xyxy": [x, y, x + w, y + h], "enabled": bool(item.get("enabled", True)),
                           "rotation": rotation}
    order = sorted(by_frame)
    return Keyframes(np.array(order, np.int64) - 1, [by_frame[f]["xyxy"] for f in order],
                     [by_frame[f]["enabled"] for f in order], [by_frame[f]["rotation"] for f in order])
