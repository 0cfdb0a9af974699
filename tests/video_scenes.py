"""Real encoded test videos made from real photos (skimage.data), and a detector that finds pasted objects.

`pan_scene` films a camera pan over the stereo-motorcycle photo with a cat face (from `chelsea`) and an
espresso cup (from `coffee`) pasted on top at known integer pixel boxes; `write_video` encodes frames
with PyAV. `TemplateDetector` finds the pasted objects again in DECODED frames by normalised
cross-correlation, so what the tests track went through the real encoder and decoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Sequence

import av
import cv2
import numpy as np
import skimage.data

from backend.core.detections import Detections

FRAME_W, FRAME_H = 320, 240
CAT_SIZE = (64, 62)   # (width, height) in pixels
CUP_SIZE = (72, 56)
CUP_HIDDEN = range(45, 55)  # frames where the cup is not in the picture (while it stands still)


def cat_patch() -> np.ndarray:
    """uint8 (62, 64, 3) RGB: the cat's face from `skimage.data.chelsea`."""
    return cv2.resize(skimage.data.chelsea()[30:280, 110:370], CAT_SIZE, interpolation=cv2.INTER_AREA)


def cup_patch() -> np.ndarray:
    """uint8 (56, 72, 3) RGB: the espresso cup and saucer from `skimage.data.coffee`."""
    return cv2.resize(skimage.data.coffee()[10:330, 70:480], CUP_SIZE, interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class Scene:
    """Frames plus the truth: per label, float32 (F, 4) xyxy pixel boxes, NaN rows where the object is absent."""

    frames: list[np.ndarray]
    boxes: dict[str, np.ndarray]
    fps: int


def cat_box(i: int) -> tuple[int, int, int, int]:
    """Constant motion to the right."""
    x, y = 8 + int(round(2.2 * i)), 20
    return x, y, x + CAT_SIZE[0], y + CAT_SIZE[1]


def cup_box(i: int) -> tuple[int, int, int, int] | None:
    """Stop and go: left until frame 30, still until 60, then up; out of the picture in `CUP_HIDDEN`."""
    if i in CUP_HIDDEN:
        return None
    if i <= 30:
        x, y = 230 - 3 * i, 160
    elif i <= 60:
        x, y = 140, 160
    else:
        x, y = 140, 160 - 2 * (i - 60)
    return x, y, x + CUP_SIZE[0], y + CUP_SIZE[1]


def pan_scene(n_frames: int = 100, fps: int = 25) -> Scene:
    """A 320x240 window panning diagonally over the motorcycle photo, with the cat and the cup pasted in."""
    background = skimage.data.stereo_motorcycle()[0]
    bh, bw = background.shape[:2]
    cat, cup = cat_patch(), cup_patch()
    frames, truth = [], {"cat": [], "cup": []}
    for i in range(n_frames):
        t = i / max(1, n_frames - 1)
        x0, y0 = int(round(t * (bw - FRAME_W))), int(round(40 + t * (bh - FRAME_H - 80)))
        frame = background[y0:y0 + FRAME_H, x0:x0 + FRAME_W].copy()
        for label, patch, box in (("cat", cat, cat_box(i)), ("cup", cup, cup_box(i))):
            if box is None:
                truth[label].append([np.nan] * 4)
                continue
            x1, y1, x2, y2 = box
            frame[y1:y2, x1:x2] = patch
            truth[label].append(box)
        frames.append(frame)
    return Scene(frames, {k: np.array(v, np.float32) for k, v in truth.items()}, fps)


def write_video(path: Path, frames: Iterable[np.ndarray], fps: int = 25, codec: str = "libx264",
                rotation: int = 0, times_s: Sequence[float] | None = None) -> Path:
    """Encode uint8 (H, W, 3) RGB frames into `path` (container from its suffix).

    `rotation`: counter-clockwise degrees written as display-matrix metadata. `times_s`: presentation time of each
    frame for a variable frame rate (default: i / fps).
    """
    frames = list(frames)
    h, w = frames[0].shape[:2]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "16", "preset": "veryfast"}
        else:
            stream.bit_rate = 4_000_000
        if times_s is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            stream.set_display_rotation(rotation)
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            if times_s is not None:
                frame.pts, frame.time_base = int(round(times_s[i] * 1000)), Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


class TemplateDetector:
    """Finds each template (label → uint8 (h, w, 3) RGB patch) at most `max_per_label` times per frame.

    A peak of normalised cross-correlation >= `min_score` gives a box of the template's size; its score is the
    peak value. Called like a pipeline: list of frames in, one `Detections` per frame out.
    """

    def __init__(self, templates: dict[str, np.ndarray], min_score: float = 0.8, max_per_label: int = 1):
        self.templates = templates
        self.min_score = min_score
        self.max_per_label = max_per_label
        self.batches: list[int] = []

    def __call__(self, frames: list[np.ndarray]) -> list[Detections]:
        self.batches.append(len(frames))
        return [self._one(frame) for frame in frames]

    def _one(self, frame: np.ndarray) -> Detections:
        boxes, scores, labels = [], [], []
        for label, patch in self.templates.items():
            ph, pw = patch.shape[:2]
            response = cv2.matchTemplate(frame, patch, cv2.TM_CCOEFF_NORMED)
            for _ in range(self.max_per_label):
                _, peak, _, (x, y) = cv2.minMaxLoc(response)
                if peak < self.min_score:
                    break
                boxes.append([x, y, x + pw, y + ph])
                scores.append(min(1.0, peak))
                labels.append(label)
                response[max(0, y - ph // 2):y + ph // 2 + 1, max(0, x - pw // 2):x + pw // 2 + 1] = -1
        h, w = frame.shape[:2]
        return Detections(np.array(boxes, np.float32).reshape(-1, 4), scores, labels, (w, h))
