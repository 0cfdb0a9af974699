"""A project classifier: a frozen ImageNet backbone (EfficientNet-Lite0) with a small linear head trained
on the project's own image-level labels (`Choices`). Saved as `classifier.pt` in its own directory
(format `FORMAT`: head state dict, class names, input size, metrics)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from backend.core.files import atomic_path
from backend.models.imagenet import imagenet_backbone

FORMAT = "frozen-backbone-linear-head/1"


class FrozenBackboneClassifier(nn.Module):
    """float (N, 3, S, S) normalised images → (N, C) logits; only `head` is trained."""

    def __init__(self, backbone: nn.Module, n_classes: int):
        super().__init__()
        self.backbone = backbone.eval()
        for parameter in self.backbone.parameters():
            parameter.requires_grad_(False)
        self.head = nn.Linear(backbone._fc.in_features, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) → float (N, F) globally pooled backbone features."""
        return self.backbone.extract_features(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def save_project_classifier(directory: Path, head: nn.Linear, class_names: list[str], metrics: dict) -> Path:
    """Write `classifier.pt` atomically: readers never see a partial checkpoint."""
    directory = Path(directory)
    checkpoint = {"format": FORMAT, "backbone": "efficientnet-lite0", "head": head.state_dict(),
                  "class_names": list(class_names), "input_size": 224, "metrics": metrics}
    with atomic_path(directory / "classifier.pt") as tmp:
        torch.save(checkpoint, tmp)
    return directory / "classifier.pt"


def load_head(path: Path) -> tuple[nn.Linear, list[str], int]:
    """`classifier.pt` in `path` → (trained linear head, class names, input size); checks the format."""
    checkpoint = torch.load(Path(path) / "classifier.pt", map_location="cpu", weights_only=True)
    if checkpoint.get("format") != FORMAT:
        raise ValueError(f"{path}/classifier.pt is not a {FORMAT} checkpoint")
    out_features, in_features = checkpoint["head"]["weight"].shape
    head = nn.Linear(in_features, out_features)
    head.load_state_dict(checkpoint["head"])
    return head, list(checkpoint["class_names"]), int(checkpoint["input_size"])


def load_project_classifier(path: Path) -> tuple[nn.Module, list[str], int]:
    """`classifier.pt` → (network, class names, input size)."""
    head, names, input_size = load_head(path)
    network = FrozenBackboneClassifier(imagenet_backbone(), len(names))
    network.head = head
    return network.eval(), names, input_size
