"""The crop-feature function the embedding map needs, built from the offline classifier's backbone.

`backend.review` never imports a model at module level: this builder imports torch and
`backend.models.imagenet.imagenet_backbone` lazily, inside the function, so the rest of the review
core stays importable (and testable) without them. The wiring passes the returned callable to
`backend.review.report.build_report(features=...)`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

def efficientnet_lite0_features(device: str = "cpu", batch_size: int = 64) -> Callable[[np.ndarray], np.ndarray]:
    """EfficientNet-Lite0 (ImageNet weights, installed offline) globally pooled features.

    Returns `features(crops)`: float32 (N, 3, S, S) crops in [0, 1] → float32 (N, 1280), computed in batches of
    `batch_size` on `device` (the same pooling as `FrozenBackboneClassifier.features`). Loads the weights once,
    when called (about 20 MB, a second or two on CPU)."""
    import torch

    from backend.models.imagenet import IMAGENET_MEAN, IMAGENET_STD, imagenet_backbone

    network = imagenet_backbone().eval().to(device)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    @torch.inference_mode()
    def features(crops: np.ndarray) -> np.ndarray:
        crops = np.asarray(crops, np.float32)
        out = []
        for start in range(0, len(crops), batch_size):
            x = (torch.from_numpy(crops[start:start + batch_size]).to(device) - mean) / std
            out.append(network.extract_features(x).mean(dim=(2, 3)).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, network._fc.in_features), np.float32)

    return features
