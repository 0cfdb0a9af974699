"""A video task → one `videorectangle` region per object track.

The video is streamed to disk under the same host, size and redirect rules as images (`ImageFetcher.fetch_video`),
decoded with PyAV every `video_frame_step`-th frame (at most `video_max_frames` / `video_max_seconds`), the
project's image pipeline runs on the sampled frames in device batches of `FRAME_BATCH` (the cascade too, when the
project has a `cascade_prompt`), supervision's ByteTrack links the detections into tracks (a pipeline that follows
objects itself, `VideoTracking` — SAM 3's video model — tracks them instead), and each track becomes a region with
the fewest keyframes that keep Label Studio's interpolation within `keyframe_iou` of every tracked box. The
prediction's score is the lowest track score (the track an annotator should check first); 1.0 without tracks.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

import numpy as np

from backend.core.ontology import Control
from backend.core.device import DeviceGate
from backend.core.errors import ModelUnavailable
from backend.core.tracks import Track, VideoFrame, VideoInfo
from backend.labelstudio.images import ImageFetcher
from backend.labelstudio.video import probe_video, read_frames
from backend.labelstudio.video_results import label_studio_fps, tracks_to_regions
from backend.pipelines.base import VideoTracking
from backend.pipelines.selection import PipelineSelector
from backend.pipelines.tracking import TrackingParams, detect_and_track
from backend.predictions.request import PredictRequest

log = logging.getLogger(__name__)
FRAME_BATCH = 8  # sampled frames per device batch


def video_regions(task: dict, task_id, control: Control, request: PredictRequest, selector: PipelineSelector,
                  fetcher: ImageFetcher, directory: Path) -> tuple[list[dict], float]:
    """(the task's `videorectangle` regions for `control` from `request.pipeline`, the task's score); `request`'s
    ontology holds `control` only. Raises `TaskError` for a video that cannot be fetched or decoded."""
    params = request.params
    url = (task.get("data") or {}).get(control.image_key)
    path = fetcher.fetch_video(url, task_id, directory)
    limits = fetcher.limits

    def detect(frames):
        found = selector.run(request.pipeline, frames, request.ontology, params, request.priority)
        return [d.resized_to(info.frame_size) for d in found]  # frames decode at the working size

    try:
        info = probe_video(path, limits.max_pixels)
        frames = read_frames(path, params.video_frame_step, params.video_max_frames,
                             params.video_max_seconds or None, limits.max_side, limits.max_pixels)
        tracks = _followed(request, frames, info, selector.gate)
        if tracks is None:
            tracks = detect_and_track(frames, detect, info.fps, params.video_frame_step, FRAME_BATCH,
                                      TrackingParams.of(params))
    finally:
        path.unlink(missing_ok=True)
    regions = tracks_to_regions(tracks, control, info, max_gap=params.keyframe_max_gap, min_iou=params.keyframe_iou,
                                fps=label_studio_fps(control, task.get("data")))
    log.info("video task %s: %d tracks, %d keyframes", task_id, len(regions),
             sum(len(r["value"]["sequence"]) for r in regions))
    return regions, video_score(tracks)


def _followed(request: PredictRequest, frames: Iterable[VideoFrame], info: VideoInfo,
              gate: DeviceGate) -> list[Track] | None:
    """Tracks from a pipeline that follows objects itself (`VideoTracking`, e.g. SAM 3's video model), in pixels of
    the displayed frame; None when the pipeline does not, or its video model cannot load (the caller then links
    per-frame detections; no frame has been read)."""
    pipeline = request.pipeline
    if not isinstance(pipeline, VideoTracking):
        return None
    size: list[tuple[int, int]] = []

    def sized(frames):
        for frame in frames:
            if not size:
                size.append((frame.image.shape[1], frame.image.shape[0]))
            yield frame

    try:
        tracks = pipeline.concept_tracks(sized(frames), request.ontology, request.params,
                                         lambda: gate.hold(request.priority))
    except ModelUnavailable as exc:
        log.warning("%s cannot follow objects in videos (%s): linking its detections per frame instead",
                    pipeline.name, exc)
        return None
    if not size:
        return tracks
    w, h = size[0]
    scale = np.array([info.width / w, info.height / h, info.width / w, info.height / h], np.float32)
    return [Track(t.track_id, t.label, t.frames, t.xyxy * scale, t.scores) for t in tracks]


def video_score(tracks: list[Track]) -> float:
    """The lowest track score (mean detection score of the track), 1.0 when there is no track."""
    return round(min((t.score for t in tracks), default=1.0), 4)
