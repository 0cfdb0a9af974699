"""Pure converters between `Track`s (pixel xyxy, 0-based video frames) and Label Studio `videorectangle` regions.

The only place video percent coordinates and 1-based frames exist. A region is one track:
``value = {"framesCount", "duration", "labels": [label], "sequence": [keyframe, ...]}`` with keyframes
``{"frame": 1-based, "time": (frame - 1) / fps seconds, "x", "y", "width", "height" (percent of the frame),
"rotation": 0, "enabled"}``. Label Studio numbers frames with the `<Video framerate>` of the config (24 when
absent): frame N is shown from ``(N - 1) / framerate`` seconds (editor `VideoCanvas.goToFrame`). When that rate
differs from the video's, frames are matched by time.
"""

from __future__ import annotations

import uuid
from typing import Any, Iterable

import numpy as np

from backend.core.ontology import Control
from backend.core.tracks import Track, VideoInfo
from backend.labelstudio.keyframes import interpolate_keyframes, reduce_keyframes, sequence_keyframes

LABEL_STUDIO_DEFAULT_FPS = 24.0  # `<Video framerate>` default in Label Studio's editor (tags/object/Video/Video.js)


def label_studio_fps(control: Control, task_data: dict | None = None) -> float:
    """Frames per second Label Studio numbers this control's video with.

    `control.frame_rate` is a number or `$key` (read from `task_data`); as in the editor, a value below 1 is taken
    as seconds per frame, and an absent or unreadable one is 24. Label Studio does not read the rate from the file:
    a config without `framerate` numbers a 30 fps video at 24 frames per second.
    """
    raw = (control.frame_rate or "").strip()
    if raw.startswith("$"):
        raw = str((task_data or {}).get(raw[1:], ""))
    try:
        rate = float(raw)
    except ValueError:
        rate = 0.0
    if not np.isfinite(rate) or rate <= 0:
        return LABEL_STUDIO_DEFAULT_FPS
    return 1.0 / rate if rate < 1 else rate


def tracks_to_regions(tracks: Iterable[Track], control: Control, info: VideoInfo, *, max_gap: int,
                      min_iou: float = 0.9, fps: float | None = None) -> list[dict]:
    """One `videorectangle` region per track whose label the control has (labels are never invented).

    Args:
        tracks: tracks in pixels of the displayed frame (`info.width` x `info.height`), 0-based video frames.
        control: a `VideoRectangle` control (`from_name`, `to_name`, labels).
        info: the decoded video.
        max_gap: video frames between two detections beyond which the box is ended (``enabled: false``) and started
            again; at least the sampling step k (e.g. 2 * k: one missed sample is interpolated over).
        min_iou: keyframe tolerance: Label Studio's interpolation keeps at least this IoU with every tracked box.
        fps: Label Studio's frame rate for this video (`label_studio_fps`); default `info.fps`.

    Returns:
        Regions with `score` = the track's mean detection score; a region's keyframes are the fewest that keep
        `min_iou` (see `reduce_keyframes`); every run of the track ends with a disabled keyframe.
    """
    fps = float(fps or info.fps)
    scale = fps / info.fps
    frames_count = info.frame_count if scale == 1.0 else max(1, int(round(info.duration_s * fps)))
    regions = []
    for track in tracks:
        if track.label not in control.labels or len(track) == 0:
            continue
        frames, first = np.unique(np.round(track.frames * scale).astype(np.int64), return_index=True)
        boxes = _clip(track.xyxy[first], info.width, info.height)
        keyframes = reduce_keyframes(frames, boxes, min_iou, max_gap=int(np.ceil(max_gap * scale - 1e-9)))
        sequence = [_keyframe(int(f), box, bool(on), info, fps)
                    for f, box, on in zip(keyframes.frames, keyframes.xyxy, keyframes.enabled)]
        regions.append({
            "id": uuid.uuid4().hex[:10],
            "from_name": control.name,
            "to_name": control.to_name,
            "type": control.result_type,
            "origin": "prediction",
            "score": round(track.score, 4),
            "value": {"framesCount": int(frames_count), "duration": float(info.duration_s),
                      "labels": [track.label], "sequence": sequence},
        })
    return regions


def _clip(xyxy: np.ndarray, width: int, height: int) -> np.ndarray:
    out = np.asarray(xyxy, np.float64).copy()
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    return out


def _keyframe(frame: int, box: np.ndarray, enabled: bool, info: VideoInfo, fps: float) -> dict:
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = info.width, info.height
    return {"frame": frame + 1, "time": frame / fps,
            "x": x1 / w * 100.0, "y": y1 / h * 100.0, "width": (x2 - x1) / w * 100.0, "height": (y2 - y1) / h * 100.0,
            "rotation": 0, "enabled": enabled}


def region_boxes(region: dict[str, Any], frame_size: tuple[int, int], last_frame: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Every frame where Label Studio shows a `videorectangle` region, and the box it shows there.

    Args:
        region: a `videorectangle` result (annotation or prediction).
        frame_size: (width, height) of the displayed video frame in pixels.
        last_frame: 0-based last frame an enabled last keyframe is held to; default ``framesCount - 1`` of the value.

    Returns:
        frames int64 (K,) 0-based in Label Studio's numbering (its frame number - 1); xyxy float32 (K, 4) pixel boxes,
        the axis-aligned box around a rotated rectangle, clipped to the frame. Raises ValueError when malformed, and
        for a keyframe past `last_frame` (beyond a 2 % / 2-frame rounding margin): the frames between keyframes are
        filled in, so a keyframe at frame 2·10⁷ of a 60-frame video would cost gigabytes.
    """
    value = region.get("value") or {}
    keyframes = sequence_keyframes(value.get("sequence") or [])
    if last_frame is None and value.get("framesCount"):
        last_frame = int(value["framesCount"]) - 1
    if last_frame is not None and len(keyframes.frames):
        beyond = int(keyframes.frames.max())
        if beyond > last_frame + max(2, 0.02 * (last_frame + 1)):
            raise ValueError(f"keyframe at frame {beyond + 1} is beyond the video's {last_frame + 1} frames")
    frames, percent, rotation = interpolate_keyframes(keyframes, last_frame)
    w, h = frame_size
    xyxy = percent.astype(np.float64) * np.array([w, h, w, h]) / 100.0
    turned = rotation != 0
    if turned.any():
        xyxy[turned] = _rotated_bounds(xyxy[turned], rotation[turned])
    xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
    xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
    return frames, xyxy.astype(np.float32)


def _rotated_bounds(xyxy: np.ndarray, degrees: np.ndarray) -> np.ndarray:
    """Axis-aligned bounds of rectangles turned clockwise on screen (y down) by `degrees` about (x_min, y_min)."""
    theta = np.radians(degrees)[:, None]
    w, h = xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]
    zero = np.zeros_like(w)
    dx, dy = np.stack([zero, w, w, zero], axis=1), np.stack([zero, zero, h, h], axis=1)  # corners from (x_min, y_min)
    xs = xyxy[:, :1] + dx * np.cos(theta) - dy * np.sin(theta)
    ys = xyxy[:, 1:2] + dx * np.sin(theta) + dy * np.cos(theta)
    return np.stack([xs.min(1), ys.min(1), xs.max(1), ys.max(1)], axis=1)


def region_label(region: dict[str, Any]) -> str | None:
    """The region's first label value (`value.labels`), or None."""
    labels = (region.get("value") or {}).get("labels") or []
    return str(labels[0]) if labels else None


def regions_to_tracks(regions: Iterable[dict[str, Any]], info: VideoInfo, fps: float | None = None) -> list[Track]:
    """`videorectangle` regions → `Track`s of every frame Label Studio shows them on (the inverse of
    `tracks_to_regions` up to the keyframe tolerance).

    Frames are 0-based video frames (matched by time when Label Studio's `fps` differs from `info.fps`), boxes are
    pixels of `info`'s frame, scores are the region's `score` (1 for annotations). Regions with another type or no
    label are skipped; a malformed one raises ValueError naming it.
    """
    fps = float(fps or info.fps)
    scale = info.fps / fps
    tracks = []
    for n, region in enumerate(regions):
        label = region_label(region)
        if str(region.get("type", "")).lower() != "videorectangle" or label is None:
            continue
        try:
            frames, xyxy = region_boxes(region, info.frame_size,
                                        last_frame=int(round(info.frame_count / scale)) - 1)
        except ValueError as exc:
            raise ValueError(f"region {n} ({region.get('id')}): {exc}") from None
        frames, first = np.unique(np.round(frames * scale).astype(np.int64), return_index=True)
        score = float(region.get("score", 1.0))
        tracks.append(Track(len(tracks) + 1, label, frames, xyxy[first], np.full(len(frames), score, np.float32)))
    return tracks
