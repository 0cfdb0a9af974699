"""Adapter for a project's specialised detector (a registry version's `detector.pt`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backend.core.detections import Detections
from backend.models.detector_io import load_detector, predict


class TrainedDetector:
    """Faster R-CNN trained by a `train` job; its classes are Label Studio label values."""

    def __init__(self, directory: Path, device: str):
        self.name = Path(directory).name
        self.device = device
        self.model, self.class_names = load_detector(directory, device)

    def detect(self, images: list[np.ndarray], threshold: float) -> list[Detections]:
        """uint8 (H, W, 3) images → one `Detections` per image (xyxy pixels, score >= `threshold`)."""
        out = []
        for image, raw in zip(images, predict(self.model, images, self.device)):
            keep = raw["scores"] >= threshold
            labels = [self.class_names[int(c) - 1] for c in raw["labels"][keep]]
            out.append(Detections(raw["boxes"][keep], raw["scores"][keep], labels, (image.shape[1], image.shape[0])))
        return out
