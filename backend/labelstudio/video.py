"""Decode a local video file with PyAV (FFmpeg): its `VideoInfo` and RGB frames every k-th frame.

Frame indices are 0-based and time-based: a frame presented ``t`` seconds after the stream starts has index
``round(t * fps)``, the frame Label Studio shows as number ``index + 1`` when its `framerate` equals the video's.
For a constant-frame-rate video that is the decode order; in a variable-frame-rate video two frames that
round to the same index keep the first, and indices with no frame are skipped. Frames are turned as the
rotation metadata (display matrix) says, so pixels match what a browser shows; flips are not applied.
A file FFmpeg cannot open, or whose first frame it cannot decode, raises `TaskError`; a damaged tail ends the
frames early with a logged warning.

Memory: the same pixel budget as images. With `max_pixels`, a stream whose frames have more pixels is refused
(`TaskError`) before any frame is decoded; with `max_side`, frames are converted to RGB straight at the working
size (FFmpeg's scaler reads the decoded frame; no full-size RGB copy is made), so a sampled frame of an 8192² video
costs 12 MB, not 200.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Iterator

import av
import numpy as np

from backend.core.errors import TaskError
from backend.core.tracks import VideoFrame, VideoInfo

log = logging.getLogger(__name__)


def probe_video(path: str | Path, max_pixels: int = 0) -> VideoInfo:
    """Metadata of the first video stream (decodes one frame to read the rotation; refuses frames over
    `max_pixels`, 0 = no limit, before that)."""
    with _open(path) as container:
        stream = _video_stream(container, path, max_pixels)
        rotation = 0
        for _index, _time, frame in _decoded(container, stream, path, max_pixels):
            rotation = _rotation(frame)
            break
        return _info(container, stream, rotation, path)


def read_frames(path: str | Path, every: int = 1, max_frames: int | None = None,
                max_seconds: float | None = None, max_side: int = 0, max_pixels: int = 0,
                first: int = 0) -> Iterator[VideoFrame]:
    """Frames with index first, first + every, first + 2*every, ... (the first frame at or past each step for a
    variable rate).

    Stops after `max_frames` frames or at the first frame presented at or after `max_seconds`.
    Every frame is decoded (codecs need their predecessors) but only the yielded ones are converted to RGB, with
    the longer side at most `max_side` pixels (0 = as decoded); frames over `max_pixels` (0 = no limit) are refused.
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    with _open(path) as container:
        stream = _video_stream(container, path, max_pixels)
        wanted, count = first, 0
        for index, time_s, frame in _decoded(container, stream, path, max_pixels):
            if max_seconds is not None and time_s >= max_seconds:
                return
            if max_frames is not None and count >= max_frames:
                return
            if index < wanted:
                continue
            yield VideoFrame(index, time_s, _rgb(frame, max_side))
            count += 1
            wanted = index + every


def read_frames_at(path: str | Path, indices: Iterable[int], max_side: int = 0,
                   max_pixels: int = 0) -> dict[int, np.ndarray]:
    """uint8 (H, W, 3) RGB frames at the given 0-based indices (longer side at most `max_side`, 0 = as decoded;
    frames over `max_pixels` refused); indices past the end are missing from the result."""
    todo = set(int(i) for i in indices)
    out: dict[int, np.ndarray] = {}
    if not todo:
        return out
    last = max(todo)
    with _open(path) as container:
        stream = _video_stream(container, path, max_pixels)
        for index, _time, frame in _decoded(container, stream, path, max_pixels):
            if index in todo:
                out[index] = _rgb(frame, max_side)
            if index >= last:
                break
    return out


def _open(path: str | Path):
    try:
        return av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise TaskError(f"video {Path(path).name} cannot be read: {exc}") from None


def _video_stream(container, path, max_pixels: int = 0):
    if not container.streams.video:
        container.close()
        raise TaskError(f"video {Path(path).name} has no video stream")
    stream = container.streams.video[0]
    w, h = stream.codec_context.width or 0, stream.codec_context.height or 0
    if max_pixels and w * h > max_pixels:
        container.close()
        raise TaskError(f"video {Path(path).name} has {w}x{h} frames ({w * h} pixels), over MAX_IMAGE_PIXELS="
                        f"{max_pixels}: not decoded")
    stream.thread_type = "AUTO"
    return stream


def _fps(stream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and float(rate) > 0:
            return float(rate)
    return 0.0


def _info(container, stream, rotation: int, path) -> VideoInfo:
    fps = _fps(stream)
    if fps <= 0:
        raise TaskError(f"video {Path(path).name} has no frame rate")
    if stream.duration and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    elif container.duration:
        duration = container.duration / av.time_base
    else:
        duration = 0.0
    frame_count = int(stream.frames) if stream.frames else int(round(duration * fps))
    if not duration and frame_count:
        duration = frame_count / fps
    w, h = stream.codec_context.width, stream.codec_context.height
    if rotation in (90, -90):
        w, h = h, w
    return VideoInfo(fps=fps, frame_count=frame_count, duration_s=duration, width=int(w), height=int(h),
                     rotation=rotation)


def _decoded(container, stream, path, max_pixels: int = 0) -> Iterator[tuple[int, float, "av.VideoFrame"]]:
    """(index, time in seconds, frame) for every decodable frame, indices strictly increasing; a frame over
    `max_pixels` (a stream that did not declare its size, or changes it midway) ends it with `TaskError`."""
    fps = _fps(stream)
    if fps <= 0:
        raise TaskError(f"video {Path(path).name} has no frame rate")
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None and stream.time_base else 0.0
    last, ordinal = -1, 0
    try:
        for frame in container.decode(stream):
            if max_pixels and frame.width * frame.height > max_pixels:
                raise TaskError(f"video {Path(path).name} has a {frame.width}x{frame.height} frame, over "
                                f"MAX_IMAGE_PIXELS={max_pixels}")
            time_s = (frame.time - start) if frame.time is not None else ordinal / fps
            ordinal += 1
            index = max(0, int(round(time_s * fps)))
            if index <= last:
                continue
            last = index
            yield index, max(0.0, time_s), frame
    except av.FFmpegError as exc:
        if last < 0:
            raise TaskError(f"video {Path(path).name} cannot be decoded: {exc}") from None
        log.warning("video %s: decoding stopped after frame %d: %s", Path(path).name, last, exc)


def _rotation(frame) -> int:
    """Counter-clockwise degrees the player turns this frame, rounded to a multiple of 90 in (-180, 180]."""
    try:
        degrees = float(frame.rotation or 0)
    except (AttributeError, TypeError, ValueError):
        return 0
    quarter = int(round(degrees / 90.0)) % 4
    return {0: 0, 1: 90, 2: 180, 3: -90}[quarter]


def _rgb(frame, max_side: int = 0) -> np.ndarray:
    """uint8 (H, W, 3) RGB of a decoded frame, scaled by FFmpeg so the longer side is at most `max_side` (0 = as
    decoded), then turned as its rotation metadata says."""
    w, h = frame.width, frame.height
    if max_side and max(w, h) > max_side:
        scale = max_side / max(w, h)
        image = frame.reformat(width=max(1, round(w * scale)), height=max(1, round(h * scale)),
                               format="rgb24").to_ndarray()
    else:
        image = frame.to_ndarray(format="rgb24")
    quarter = _rotation(frame) // 90
    if quarter:
        image = np.ascontiguousarray(np.rot90(image, k=quarter))
    return image
