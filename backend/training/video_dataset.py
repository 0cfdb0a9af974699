"""Training data from video annotations: `videorectangle` tracks → per-frame box examples, and their frames.

A task's chosen annotation (as for images) gives one track per region. The examples are the frames where an
annotator placed a keyframe plus every m-th frame inside the annotated span (first to last frame any region is
shown), each with every box Label Studio shows there (its interpolation, `enabled: false` honoured). A frame in
the span where no region is shown is a negative example, as an annotated image without regions is.

Frames are 0-based indices of the decoded video (`backend.labelstudio.video`), matched to Label Studio's frame
numbers by time; boxes are float32 (N, 4) xyxy pixels of the displayed frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from backend.core.cancel import NEVER, StopFlag
from backend.core.errors import BadRequest
from backend.core.ontology import Control
from backend.core.tracks import VideoInfo
from backend.labelstudio.images import ImageFetcher
from backend.labelstudio.keyframes import sequence_keyframes
from backend.labelstudio.video import probe_video, read_frames_at
from backend.labelstudio.video_results import label_studio_fps, region_label, regions_to_tracks
from backend.training.dataset import LabeledImage, chosen_annotation


@dataclass(frozen=True)
class AnnotatedVideo:
    """One video task's chosen annotation: its `videorectangle` regions with labels the config has.

    Attributes:
        fps: the frame rate Label Studio numbers this task's frames with (`<Video framerate>`, default 24).
    """

    task_id: int
    url: str
    regions: tuple[dict, ...]
    fps: float


@dataclass(frozen=True)
class VideoFrameExample:
    """One frame of an annotated video.

    Attributes:
        frame: 0-based index of the decoded video frame.
        boxes: float32 (N, 4) xyxy pixels of a frame of `image_size` (width, height); N = 0 is a negative.
        labels: N Label Studio label values.
        keyframe: whether an annotator placed a keyframe on this frame (else the boxes are interpolated).
    """

    task_id: int
    url: str
    frame: int
    boxes: np.ndarray
    labels: tuple[str, ...]
    image_size: tuple[int, int]
    keyframe: bool

    def boxes_for(self, width: int, height: int) -> np.ndarray:
        """Boxes rescaled to a frame of `width` x `height` (e.g. a resized copy)."""
        if self.image_size == (width, height):
            return self.boxes
        sx, sy = width / self.image_size[0], height / self.image_size[1]
        return self.boxes * np.array([sx, sy, sx, sy], np.float32)


def annotated_videos(tasks: list[dict], controls: Iterable[Control]) -> list[AnnotatedVideo]:
    """Exported tasks → the video tasks whose chosen annotation can train these `VideoRectangle` controls.

    Regions of other controls, other types or labels the config no longer has are dropped; a task whose chosen
    annotation has no region left is kept (its frames are then not sampled: there is no annotated span).
    """
    video_controls = [c for c in controls if c.is_video]
    names = {c.name: c for c in video_controls}
    out = []
    for task in tasks:
        data = task.get("data") or {}
        annotation = chosen_annotation(task)
        control = next((c for c in video_controls if data.get(c.image_key)), None)
        if annotation is None or control is None:
            continue
        regions = tuple(
            r for r in annotation.get("result") or []
            if isinstance(r, dict) and r.get("from_name") in names
            and str(r.get("type", "")).lower() == "videorectangle"
            and region_label(r) in names[r["from_name"]].labels)
        out.append(AnnotatedVideo(int(task["id"]), str(data[control.image_key]), regions,
                                  label_studio_fps(control, data)))
    return out


def video_frame_examples(video: AnnotatedVideo, info: VideoInfo, every: int = 5) -> list[VideoFrameExample]:
    """Keyframes plus every `every`-th frame of the annotated span, with the boxes shown there.

    `info` is the decoded video (`probe_video` of the downloaded file): its frame size turns percent into pixels
    and its frame rate matches Label Studio's frame numbers to decoded frames. Boxes narrower than a pixel are
    dropped. A malformed region raises `BadRequest` naming the task.
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    try:
        tracks = regions_to_tracks(video.regions, info, fps=video.fps)
        keyframes = {int(round(f / video.fps * info.fps)) for r in video.regions
                     for f in sequence_keyframes((r.get("value") or {}).get("sequence") or []).frames}
    except ValueError as exc:
        raise BadRequest(f"task {video.task_id}: {exc}") from None
    shown = [t.frames for t in tracks if len(t)]
    if not shown:
        return []
    first, last = int(min(f[0] for f in shown)), int(max(f[-1] for f in shown))
    sampled = {f for f in range(first, last + 1) if f % every == 0}
    frames = sorted(sampled | {f for f in keyframes if first <= f <= last})
    examples = []
    for frame in frames:
        boxes, labels = [], []
        for track in tracks:
            at = np.searchsorted(track.frames, frame)
            if at < len(track) and track.frames[at] == frame:
                box = track.xyxy[at]
                if (box[2:] - box[:2] >= 1).all():
                    boxes.append(box)
                    labels.append(track.label)
        examples.append(VideoFrameExample(video.task_id, video.url, frame, np.array(boxes, np.float32).reshape(-1, 4),
                                          tuple(labels), info.frame_size, frame in keyframes))
    return examples


def example_images(path: str | Path, examples: Iterable[VideoFrameExample], max_side: int = 0, max_pixels: int = 0
                   ) -> list[tuple[VideoFrameExample, np.ndarray]]:
    """Each example with its uint8 (H, W, 3) RGB frame decoded from the local video file at `path` (longer side at
    most `max_side`, 0 = as decoded; frames over `max_pixels` refused: `TaskError`).

    Examples whose frame the file does not have (past its end) are left out.
    """
    examples = list(examples)
    images = read_frames_at(path, [e.frame for e in examples], max_side, max_pixels)
    return [(e, images[e.frame]) for e in examples if e.frame in images]


def video_examples(tasks: list[dict], controls: Iterable[Control], fetcher: ImageFetcher, directory: Path,
                   every: int = 5, max_side: int = 0, stop: StopFlag = NEVER) -> list[LabeledImage]:
    """Training images from the annotated videos of exported tasks: each video streamed to `directory` (the host
    and size rules of `ImageFetcher.fetch_video`), its keyframes and every `every`-th annotated frame decoded
    (frames scaled so the longer side is at most `max_side`, 0 = as decoded; frames over the fetcher's
    `max_pixels` refused), the file removed afterwards."""
    out = []
    max_pixels = fetcher.limits.max_pixels
    for video in annotated_videos(tasks, controls):
        stop.check()
        path = fetcher.fetch_video(video.url, video.task_id, directory)
        try:
            examples = video_frame_examples(video, probe_video(path, max_pixels), every)
            for example, image in example_images(path, examples, max_side, max_pixels):
                boxes = example.boxes_for(image.shape[1], image.shape[0])
                out.append(LabeledImage(video.task_id, image, boxes, example.labels))
        finally:
            path.unlink(missing_ok=True)
    return out
