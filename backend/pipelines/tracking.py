"""Per-frame `Detections` → `Track`s, with supervision's ByteTrack; and the video path: detect in batches, then link.

One ByteTrack runs per label, so a track never switches labels. Frames may be sampled (every k-th frame):
ByteTrack then sees ``fps / k`` frames per second, and its lost-track buffer is converted from video frames
to sampled steps. ByteTrack reports a track that starts after the first sampled frame only from its second
detection (it confirms new tracks then); `link_tracks` puts the first detection back: the detection of the
previous sampled frame, of the same label and assigned to no track, that overlaps the confirming box with
IoU >= 0.3 (the overlap ByteTrack itself needs to confirm a new track).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

import numpy as np
import supervision as sv

from backend.core.detections import Detections, box_iou
from backend.core.params import PredictParams
from backend.core.tracks import Track
from backend.core.tracks import VideoFrame

CONFIRM_IOU = 0.3
_PROJECT = PredictParams()  # the defaults of the `track_*` params


@dataclass(frozen=True)
class TrackingParams:
    """Thresholds of track linking: the project's `track_*` params (`of`); the defaults are theirs.

    Attributes:
        activation_threshold: detections scoring at least this start and extend tracks (ByteTrack's
            `track_activation_threshold`); weaker ones (above 0.1) only extend existing tracks.
        lost_frames: video frames a track whose object is no longer detected waits for it to reappear before the
            next detection starts a new track (ByteTrack's lost-track buffer, converted to sampled steps).
        matching_threshold: largest matching cost ``1 - IoU * score`` that still links a detection to a track
            (ByteTrack's `minimum_matching_threshold`); lower is stricter.
        min_length: tracks with fewer detections (sampled frames) than this are dropped. ByteTrack confirms a track
            with its second detection (on the very first frame, with its first), so an object detected on a single
            sampled frame is never a track, whatever this says.
    """

    activation_threshold: float = _PROJECT.track_activation_threshold
    lost_frames: int = _PROJECT.track_lost_frames
    matching_threshold: float = _PROJECT.track_matching_threshold
    min_length: int = _PROJECT.track_min_length

    @classmethod
    def of(cls, params: PredictParams) -> "TrackingParams":
        """A project's `track_*` params."""
        return cls(params.track_activation_threshold, params.track_lost_frames, params.track_matching_threshold,
                   params.track_min_length)

    def __post_init__(self) -> None:
        if not 0 <= self.activation_threshold <= 1 or not 0 < self.matching_threshold <= 1:
            raise ValueError("activation_threshold must be in [0, 1] and matching_threshold in (0, 1]")
        if self.lost_frames < 0 or self.min_length < 1:
            raise ValueError("lost_frames must be >= 0 and min_length >= 1")


def link_tracks(detections: Mapping[int, Detections], fps: float, every: int = 1,
                params: TrackingParams = TrackingParams()) -> list[Track]:
    """Link detections into tracks.

    Args:
        detections: 0-based frame index → that frame's `Detections` (pixel xyxy). Every sampled frame must be
            present, also those with no detection, so that lost tracks age.
        fps: frames per second of the video.
        every: sampling step k in video frames (the keys are about k apart).
        params: thresholds.

    Returns:
        Tracks with ids 1, 2, ... in order of first frame, then label; each keeps the detected boxes and scores.
    """
    if fps <= 0 or every < 1:
        raise ValueError(f"fps must be > 0 and every >= 1, got fps={fps}, every={every}")
    frames = sorted(detections)
    labels = list(dict.fromkeys(label for f in frames for label in detections[f].labels))
    found: list[tuple[str, list[tuple[int, int]]]] = []
    for label in labels:
        per_frame = {f: np.flatnonzero(np.array(detections[f].labels, dtype=object) == label) for f in frames}
        for rows in _byte_track(detections, frames, per_frame, fps, every, params):
            found.append((label, rows))
    tracks = []
    for label, rows in found:
        if len(rows) < params.min_length:
            continue
        tracks.append(Track(0, label, [f for f, _ in rows], np.stack([detections[f].xyxy[i] for f, i in rows]),
                            [detections[f].scores[i] for f, i in rows]))
    tracks.sort(key=lambda t: (int(t.frames[0]), t.label, tuple(t.xyxy[0])))
    return [Track(n, t.label, t.frames, t.xyxy, t.scores) for n, t in enumerate(tracks, start=1)]


def _byte_track(detections: Mapping[int, Detections], frames: list[int], per_frame: dict[int, np.ndarray],
                fps: float, every: int, params: TrackingParams) -> list[list[tuple[int, int]]]:
    """One label: ByteTrack over the sampled frames → per track, (frame, row in that frame's Detections)."""
    step_fps = fps / every
    lost_steps = math.ceil(params.lost_frames / every)
    with warnings.catch_warnings():  # deprecated in supervision 0.28+, still there in 0.30 (see pyproject.toml)
        warnings.simplefilter("ignore", FutureWarning)
        tracker = sv.ByteTrack(
            track_activation_threshold=params.activation_threshold,
            # sv.ByteTrack waits int(frame_rate / 30 * lost_track_buffer) updates; make that exactly `lost_steps`
            lost_track_buffer=(lost_steps + 0.5) * 30.0 / step_fps,
            minimum_matching_threshold=params.matching_threshold,
            frame_rate=step_fps,
            minimum_consecutive_frames=1,
        )
    rows: dict[int, list[tuple[int, int]]] = {}
    assigned: dict[int, set[int]] = {}
    for f in frames:
        idx = per_frame[f]
        dets = detections[f]
        sv_dets = sv.Detections(xyxy=dets.xyxy[idx].reshape(-1, 4), confidence=dets.scores[idx],
                                class_id=np.zeros(len(idx), int), data={"row": idx})
        out = tracker.update_with_detections(sv_dets)
        assigned[f] = set()
        for track_id, row in zip(out.tracker_id, out.data.get("row", [])):
            rows.setdefault(int(track_id), []).append((f, int(row)))
            assigned[f].add(int(row))
    position = {f: n for n, f in enumerate(frames)}
    for track_rows in rows.values():
        first, row = track_rows[0]
        if position[first] == 0:
            continue
        previous = frames[position[first] - 1]
        free = [r for r in per_frame[previous] if int(r) not in assigned[previous]
                and detections[previous].scores[r] >= tracker.det_thresh]
        if not free:
            continue
        iou = box_iou(detections[first].xyxy[row], detections[previous].xyxy[free])[0]
        best = int(np.argmax(iou))
        if iou[best] >= CONFIRM_IOU:
            track_rows.insert(0, (previous, int(free[best])))
            assigned[previous].add(int(free[best]))
    return list(rows.values())


def detect_and_track(frames: Iterable[VideoFrame], detect: Callable[[list[np.ndarray]], list[Detections]],
                     fps: float, every: int, batch_size: int = 8,
                     params: TrackingParams = TrackingParams()) -> list[Track]:
    """The video path: run `detect` on the sampled frames in batches of `batch_size`, then link tracks.

    Args:
        frames: sampled frames, e.g. `backend.labelstudio.video.read_frames(path, every, ...)`; consumed lazily,
            so at most one batch of images is held at a time.
        detect: a pipeline on a batch: list of uint8 (H, W, 3) RGB frames → one `Detections` per frame, in order.
        fps: frames per second of the video; every: the sampling step k the frames were read with.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    found: dict[int, Detections] = {}
    batch: list[VideoFrame] = []

    def flush() -> None:
        results = detect([f.image for f in batch])
        if len(results) != len(batch):
            raise ValueError(f"detect returned {len(results)} results for {len(batch)} frames")
        found.update({f.index: d for f, d in zip(batch, results)})
        batch.clear()

    for frame in frames:
        batch.append(frame)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return link_tracks(found, fps, every, params)
