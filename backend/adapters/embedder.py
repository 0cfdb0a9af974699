"""Image embeddings for grouping tasks by kind of image (the predictions' `cluster`) and for the review page's
embedding map: EfficientNet-Lite0 (ImageNet weights installed offline) globally pooled features."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from backend.models.imagenet import efficientnet_lite0_features

EMBED_SIDE = 224  # images are resized to this square before embedding


class ImageEmbedder:
    """`features(crops)`: float32 (N, 3, S, S) in [0, 1] → float32 (N, 1280); `embed(images)`: uint8 (H, W, 3)
    images of any sizes → float32 (N, 1280) rows of unit length."""

    name = "efficientnet-lite0"

    def __init__(self, device: str):
        self.device = device
        self.features = efficientnet_lite0_features(device)

    def embed(self, images: list[np.ndarray]) -> np.ndarray:
        if not images:
            return np.zeros((0, 1280), np.float32)
        crops = np.stack([_square(image) for image in images])
        vectors = self.features(crops)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _square(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) → float32 (3, EMBED_SIDE, EMBED_SIDE) in [0, 1] (the whole image, aspect not kept)."""
    x = torch.from_numpy(np.ascontiguousarray(image[..., :3])).permute(2, 0, 1)[None].float().div(255)
    return F.interpolate(x, size=(EMBED_SIDE, EMBED_SIDE), mode="bilinear", antialias=True,
                         align_corners=False)[0].numpy()
