"""Video types: what the decoder found about a video (`VideoInfo`) and one object followed over frames (`Track`).

Frame indices here are 0-based and time-based: index ``i`` is the frame shown from ``i / fps`` seconds after
the start of the video stream (for a constant-frame-rate video, the i-th decoded frame). Label Studio numbers
frames from 1; only `backend.labelstudio.video_results` converts. Boxes are absolute pixel coordinates
``xyxy`` of the frame as a player shows it (rotation metadata applied), like `Detections`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VideoInfo:
    """A video stream as decoded.

    Attributes:
        fps: average frames per second (the stream's average rate; nominal for a variable-rate video).
        frame_count: number of frames (the container's count, else ``round(duration_s * fps)``).
        duration_s: duration of the video stream in seconds.
        width, height: size of the displayed frame in pixels, after rotation metadata.
        rotation: counter-clockwise degrees (0, 90, 180, -90) the player turns the coded frame by;
            frames this backend decodes are already turned.
    """

    fps: float
    frame_count: int
    duration_s: float
    width: int
    height: int
    rotation: int = 0

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of a displayed frame in pixels."""
        return (self.width, self.height)


@dataclass(frozen=True)
class Track:
    """One object followed through a video, with a single label.

    Attributes:
        track_id: identifier, unique within one video's tracks (>= 1).
        label: Label Studio label value (an exact string from the label config).
        frames: int64 (K,) 0-based frame indices where the object was detected, strictly increasing;
            with sampling every k-th frame, consecutive entries are k apart unless detections were missed.
        xyxy: float32 (K, 4) pixel boxes of the frame (x_min, y_min, x_max, y_max), one per entry of `frames`.
        scores: float32 (K,) detection confidences in [0, 1].
    """

    track_id: int
    label: str
    frames: np.ndarray
    xyxy: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        frames = np.asarray(self.frames, dtype=np.int64).reshape(-1)
        xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if not (len(frames) == len(xyxy) == len(scores)):
            raise ValueError(f"Track: {len(frames)} frames, {len(xyxy)} boxes, {len(scores)} scores")
        if len(frames) and (frames[0] < 0 or np.any(np.diff(frames) <= 0)):
            raise ValueError("Track: frames must be non-negative and strictly increasing")
        object.__setattr__(self, "frames", frames)
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "scores", scores)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def score(self) -> float:
        """Mean detection score of the track (0 when empty)."""
        return float(self.scores.mean()) if len(self.scores) else 0.0


@dataclass(frozen=True)
class VideoFrame:
    """One decoded frame.

    Attributes:
        index: 0-based time-based frame index (`round(time x fps)`).
        time_s: presentation time in seconds from the start of the video stream.
        image: uint8 (H, W, 3) RGB pixels, rotation metadata applied.
    """

    index: int
    time_s: float
    image: np.ndarray
