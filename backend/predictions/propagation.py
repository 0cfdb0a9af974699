"""A video task with an annotator's boxes → those boxes carried through the following frames (SAM 2 video tracking).

The boxes come from `backend.labelstudio.video_seeds.seed_regions` (the request's context, else the newest draft or
annotation). Each carried region keeps its id, label and every keyframe the annotator set; after its last keyframe the
tracker follows the object frame by frame and the track becomes the fewest keyframes that keep Label Studio's
interpolation within `keyframe_iou` of the tracked box (`tracks_to_regions`); where the object is lost for more than
`keyframe_max_gap` frames the box ends (a disabled keyframe). Several boxes are tracked together in one pass.

Caps per task: at most `propagate_max_frames` frames and `propagate_max_seconds` seconds of video after the earliest
box, and (for `/predict`) the request's deadline: propagation stops there and returns the track so far. Frames are
decoded one at a time at the working size (`max_side`); the tracker keeps a bounded window of them
(`backend.adapters.sam2_video`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from backend.core.errors import ModelUnavailable, TaskError
from backend.core.ontology import Control
from backend.core.params import PredictParams
from backend.core.tracks import Track, VideoInfo
from backend.labelstudio.images import ImageFetcher
from backend.labelstudio.keyframes import sequence_keyframes
from backend.labelstudio.video import probe_video, read_frames
from backend.labelstudio.video_results import label_studio_fps, region_label, tracks_to_regions
from backend.labelstudio.video_seeds import carried
from backend.pipelines.video_boxes import BoxCarrier, BoxSeed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Seed:
    """One carried region: its index in the regions given, its last keyframe as a 0-based video frame, and the box
    there as float64 (4,) pixels of the displayed frame."""

    index: int
    frame: int
    xyxy: np.ndarray


def propagated_regions(task: dict, task_id, control: Control, regions: list[dict], params: PredictParams,
                       carrier: BoxCarrier, fetcher: ImageFetcher, directory: Path, priority: int,
                       deadline_s: float | None = None) -> tuple[list[dict], float]:
    """(the regions, carried ones continued by the tracker, the task's score = the lowest carried region's score,
    1.0 when nothing was carried). Raises `TaskError` for a video that cannot be fetched or decoded, a malformed
    region, or a tracker that cannot load."""
    started = time.monotonic()
    data = task.get("data") or {}
    path = fetcher.fetch_video(data.get(control.image_key), task_id, directory)
    fps = label_studio_fps(control, data)
    try:
        info = probe_video(path, fetcher.limits.max_pixels)
        seeds = _seeds(regions, info, fps)
        if not seeds:
            return regions, 1.0
        start = min(s.frame for s in seeds)
        frames = _Frames(path, start, params, info, fetcher)
        stop = (lambda: time.monotonic() - started > deadline_s) if deadline_s else None
        try:
            found = carrier.carry(frames.images(), frames.seeds(seeds), priority, stop)
        except ModelUnavailable as exc:
            raise TaskError(f"carrying the annotator's video boxes needs the video tracker: {exc}") from None
        except ValueError as exc:  # a box with nothing left inside the frame, a frame of another size
            raise TaskError(f"video boxes could not be carried: {exc}") from None
    finally:
        path.unlink(missing_ok=True)
    out, scores = list(regions), []
    for track in found:
        seed = seeds[track.obj_id - 1]
        continued = _continued(regions[seed.index], seed, track, frames, control, info, fps, params)
        if continued is not None:
            out[seed.index] = continued
            scores.append(continued["score"])
    log.info("video task %s: %d of %d boxes carried over %d frames in %.1f s", task_id, len(scores), len(regions),
             frames.count, time.monotonic() - started)
    return out, round(min(scores, default=1.0), 4)


def _seeds(regions: list[dict], info: VideoInfo, fps: float) -> list[_Seed]:
    """The carried regions' last keyframes, in video frames and pixels; malformed ones raise `TaskError`."""
    seeds = []
    for n, region in enumerate(regions):
        if not carried(region):
            continue
        try:
            keyframes = sequence_keyframes(region["value"]["sequence"])
        except (KeyError, TypeError, ValueError) as exc:
            raise TaskError(f"video region {region.get('id')!r} has a malformed sequence: {exc}") from None
        frame = int(round(int(keyframes.frames[-1]) * info.fps / fps))
        if frame >= info.frame_count:
            raise TaskError(f"video region {region.get('id')!r}: keyframe {int(keyframes.frames[-1]) + 1} is past "
                            f"the video's {info.frame_count} frames")
        scale = np.array([info.width, info.height, info.width, info.height]) / 100.0
        seeds.append(_Seed(n, frame, keyframes.xyxy[-1].astype(np.float64) * scale))
    return seeds


class _Frames:
    """The decoded frames from video frame `start` on, lazily, at the working size (longer side at most the fetcher's
    `max_side`); remembers their video frame indices. `working_scale`: working pixels per displayed pixel."""

    def __init__(self, path: Path, start: int, params: PredictParams, info: VideoInfo, fetcher: ImageFetcher):
        limits = fetcher.limits
        max_seconds = start / info.fps + params.propagate_max_seconds if params.propagate_max_seconds else None
        self._frames = read_frames(path, 1, params.propagate_max_frames, max_seconds, limits.max_side,
                                   limits.max_pixels, first=start)
        self.start = start
        self.indices: list[int] = []
        longest = max(info.width, info.height)
        self.working_scale = limits.max_side / longest if limits.max_side and longest > limits.max_side else 1.0

    @property
    def count(self) -> int:
        return len(self.indices)

    def images(self) -> Iterator[np.ndarray]:
        for frame in self._frames:
            self.indices.append(frame.index)
            yield frame.image

    def seeds(self, seeds: list[_Seed]) -> list[BoxSeed]:
        """The tracker's seeds: object ids 1, 2, ... in the order of `seeds`, frames as offsets from `start`, boxes in
        working pixels."""
        return [BoxSeed(n + 1, s.frame - self.start, (s.xyxy * self.working_scale).astype(np.float32))
                for n, s in enumerate(seeds)]


def _continued(region: dict, seed: _Seed, track, frames: _Frames, control: Control, info: VideoInfo, fps: float,
               params: PredictParams) -> dict | None:
    """The annotator's region with the tracked boxes after its last keyframe (None when its label is not the
    control's or nothing was tracked past the seed)."""
    label = region_label(region)
    offsets = np.asarray(track.frames, np.int64)
    after = offsets + frames.start > seed.frame
    if label is None or label not in control.labels or not after.any():
        return None
    video_frames = np.array([frames.indices[i] for i in offsets[after]], np.int64)
    boxes = np.asarray(track.xyxy, np.float64)[after] / frames.working_scale
    whole = Track(1, label, np.concatenate([[seed.frame], video_frames]), np.vstack([seed.xyxy[None], boxes]),
                  np.concatenate([[1.0], track.scores[after]]))
    (made,) = tracks_to_regions([whole], control, info, max_gap=params.keyframe_max_gap, min_iou=params.keyframe_iou,
                                fps=fps)
    own = list(region["value"]["sequence"])
    last_own = int(own[-1].get("frame", 0))
    sequence = own + [k for k in made["value"]["sequence"] if k["frame"] > last_own]
    score = round(float(np.mean(track.scores[after])), 4)
    return {**region, "origin": "prediction", "score": score,
            "value": {**region["value"], "framesCount": made["value"]["framesCount"],
                      "duration": made["value"]["duration"], "sequence": sequence}}
