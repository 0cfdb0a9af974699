"""A video task with an annotator's boxes → those boxes carried through the following frames (SAM 2 video tracking).

The boxes come from `backend.labelstudio.video_seeds.seed_regions` (the request's context, else the newest draft or
annotation). Each carried region keeps its id, label and every keyframe the annotator set; after its last keyframe the
tracker follows the object frame by frame and the track becomes the fewest keyframes that keep Label Studio's
interpolation within `keyframe_iou` of the tracked box (`tracks_to_regions`); where the object is lost for more than
`keyframe_max_gap` frames the box ends (a disabled keyframe). Several boxes are tracked together in one pass.

Caps: each box is carried at most `propagate_max_frames` frames and `propagate_max_seconds` seconds of video after
its own last keyframe, and (for `/predict`) until the request's deadline, where carrying stops and the tracks so far
are returned. Frames are decoded one at a time at the working size (`max_side`); a frame index a variable-rate video
skips is filled with the frame before it, so the tracker sees one frame per index; the tracker keeps a bounded window
of frame memories (`backend.adapters.sam2_video`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from backend.core.errors import ModelUnavailable, TaskError
from backend.core.ontology import Control
from backend.core.params import PredictParams
from backend.core.tracks import Track, VideoInfo
from backend.labelstudio.images import ImageFetcher
from backend.labelstudio.keyframes import sequence_keyframes
from backend.labelstudio.video import probe_video, read_frames
from backend.labelstudio.video_results import label_studio_fps, region_boxes, region_label, tracks_to_regions
from backend.labelstudio.video_seeds import carried
from backend.pipelines.video_boxes import BoxCarrier, BoxSeed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Seed:
    """One carried region: its index in the regions given, its last keyframe as a 0-based video frame, the box there
    as float64 (4,) pixels of the displayed frame (around the rotated rectangle, clipped), and the last video frame
    it may be carried to (its caps)."""

    index: int
    frame: int
    xyxy: np.ndarray
    until: int


def propagated_regions(task: dict, task_id, control: Control, regions: list[dict], params: PredictParams,
                       carrier: BoxCarrier, fetcher: ImageFetcher, directory: Path, priority: int,
                       stop: Callable[[], bool] | None = None) -> tuple[list[dict], float]:
    """(the regions, carried ones continued by the tracker, the task's score = the lowest carried region's score,
    1.0 when nothing could be carried). `stop()` True ends carrying early (the request's deadline). Raises
    `TaskError` for a video that cannot be fetched or decoded, a malformed region, or a tracker that cannot load or
    run on the boxes."""
    started = time.monotonic()
    data = task.get("data") or {}
    path = fetcher.fetch_video(data.get(control.image_key), task_id, directory)
    fps = label_studio_fps(control, data)
    try:
        info = probe_video(path, fetcher.limits.max_pixels)
        seeds = _seeds(regions, control, info, fps, params)
        if not seeds:
            return regions, 1.0
        frames = _Frames(path, seeds, params, info, fetcher)
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


def _seeds(regions: list[dict], control: Control, info: VideoInfo, fps: float, params: PredictParams) -> list[_Seed]:
    """The carried regions with a label of the control: their last keyframes in video frames and displayed pixels;
    a malformed region or one past the video's end raises `TaskError`."""
    seeds = []
    for n, region in enumerate(regions):
        if not carried(region) or region_label(region) not in control.labels:
            continue
        try:
            last = int(sequence_keyframes(region["value"]["sequence"]).frames.max())
            shown, boxes = region_boxes(region, info.frame_size, last_frame=last)
        except (KeyError, TypeError, ValueError) as exc:
            raise TaskError(f"video region {region.get('id')!r} has a malformed sequence: {exc}") from None
        frame = int(round(last * info.fps / fps))
        if info.frame_count and frame >= info.frame_count:
            raise TaskError(f"video region {region.get('id')!r}: keyframe {last + 1} is past the video's "
                            f"{info.frame_count} frames")
        until = frame + params.propagate_max_frames
        if params.propagate_max_seconds:
            until = min(until, frame + int(params.propagate_max_seconds * info.fps))
        seeds.append(_Seed(n, frame, boxes[shown == last][0].astype(np.float64), until))
    return seeds


class _Frames:
    """The decoded frames from the earliest seed on, lazily, at the working size (longer side at most the fetcher's
    `max_side`), one per video frame index up to the last seed's cap; remembers how many were given.
    `working_scale`: working pixels per displayed pixel."""

    def __init__(self, path: Path, seeds: list[_Seed], params: PredictParams, info: VideoInfo,
                 fetcher: ImageFetcher):
        limits = fetcher.limits
        self.start = min(s.frame for s in seeds)
        until = max(s.until for s in seeds)
        self._frames = read_frames(path, 1, until + 1 - self.start, None, limits.max_side, limits.max_pixels,
                                   first=self.start)
        self.until = until
        self.count = 0
        longest = max(info.width, info.height)
        self.working_scale = limits.max_side / longest if limits.max_side and longest > limits.max_side else 1.0

    def images(self) -> Iterator[np.ndarray]:
        previous = None
        for frame in self._frames:
            target = min(frame.index, self.until + 1)
            while previous is not None and self.start + self.count < target:  # a skipped index: the frame before
                self.count += 1
                yield previous
            if frame.index > self.until:
                return
            self.count += 1
            previous = frame.image
            yield frame.image

    def seeds(self, seeds: list[_Seed]) -> list[BoxSeed]:
        """The tracker's seeds: object ids 1, 2, ... in the order of `seeds`, frames as offsets from `start` (one
        frame per video index), boxes in working pixels."""
        return [BoxSeed(n + 1, s.frame - self.start, (s.xyxy * self.working_scale).astype(np.float32))
                for n, s in enumerate(seeds)]


def _continued(region: dict, seed: _Seed, track, frames: _Frames, control: Control, info: VideoInfo, fps: float,
               params: PredictParams) -> dict | None:
    """The annotator's region with the tracked boxes after its last keyframe, up to the seed's cap (None when nothing
    was tracked past the seed)."""
    video_frames = np.asarray(track.frames, np.int64) + frames.start
    after = (video_frames > seed.frame) & (video_frames <= seed.until)
    if not after.any():
        return None
    boxes = np.asarray(track.xyxy, np.float64)[after] / frames.working_scale
    whole = Track(1, region_label(region), np.concatenate([[seed.frame], video_frames[after]]),
                  np.vstack([seed.xyxy[None], boxes]), np.concatenate([[1.0], track.scores[after]]))
    (made,) = tracks_to_regions([whole], control, info, max_gap=params.keyframe_max_gap, min_iou=params.keyframe_iou,
                                fps=fps)
    own = sorted(region["value"]["sequence"], key=lambda k: float(k["frame"]))
    last_own = float(own[-1]["frame"])
    sequence = own + [k for k in made["value"]["sequence"] if k["frame"] > last_own]
    score = round(float(np.mean(track.scores[after])), 4)
    return {**region, "origin": "prediction", "score": score,
            "value": {**region["value"], "framesCount": made["value"]["framesCount"],
                      "duration": made["value"]["duration"], "sequence": sequence}}
