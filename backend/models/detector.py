"""The project detector's network: torchvision Faster R-CNN on an EfficientNet-Lite0 (ImageNet, offline weights)
+ FPN backbone with frozen batch-norm statistics, described by a `DetectorSpec` saved next to its weights.

Images are uint8 (H, W, 3); boxes float32 (N, 4) xyxy pixels; labels int64 (N,) in 1..C (0 = background).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.misc import FrozenBatchNorm2d

from backend.models.box_loss import BOX_LOSSES, with_box_loss
from backend.models.imagenet import imagenet_backbone, random_backbone
from backend.models.tta import VIEW_COUNTS

# EfficientNet-Lite0 blocks ending at strides 4, 8, 16, 32 → (FPN level name, channels)
TAPS = {2: ("0", 24), 4: ("1", 40), 10: ("2", 112), 15: ("3", 320)}
ANCHOR_SIZES = {"0": (8, 12), "1": (16, 24), "2": (32, 48), "3": (64, 128)}  # when the spec fits none
ANCHORS_PER_LEVEL = 2


def fit_anchor_sizes(sides, levels: int, per_level: int = ANCHORS_PER_LEVEL) -> tuple[tuple[int, ...], ...]:
    """Anchor sizes (pixels of the resized image, finest FPN level first) spread geometrically over the 2nd-98th
    percentile of the training boxes' sides (`sides`: sqrt(w * h) of each box at the training scale), `per_level`
    per level; () without boxes."""
    sides = np.asarray(sides, float)
    sides = sides[np.isfinite(sides) & (sides > 0)]
    if not len(sides):
        return ()
    low, high = np.percentile(sides, [2, 98])
    low, high = max(4.0, low), max(4.0, high, low * 1.5)
    sizes = np.geomspace(low, high, levels * per_level).round().astype(int)
    sizes = np.maximum.accumulate(np.maximum(sizes, 4 + np.arange(len(sizes))))  # strictly increasing, >= 4 px
    return tuple(tuple(int(v) for v in sizes[i * per_level:(i + 1) * per_level]) for i in range(levels))


@dataclass(frozen=True)
class DetectorSpec:
    """What a trained detector was built with (saved next to its weights, so serving rebuilds the same net).

    min_size: shorter image side at inference; train_sizes: further shorter sides sampled during
    training (multi-scale; torchvision uses the last entry, `min_size`, at inference); stride4: add a stride-4 FPN
    level for small objects; frozen_blocks: the stem and this many first backbone blocks keep their
    ImageNet weights (faster training, fewer parameters to overfit); tta_views: dihedral views fused at
    inference (1 = none, 2, 4 or 8; views of the backbone maps when a frozen prefix can be cached,
    `backend.models.map_views`, else of the image, `backend.models.tta`); tta_scales: further shorter sides the map
    views are also predicted at and fused with those at `min_size` (e.g. the training scales; only for a detector
    whose frozen prefix can be cached: one backbone pass per scale); roi_batch: proposals per image the box head learns
    from in training, of which `roi_positive_fraction` positive at most (torchvision's 0.25 in checkpoints written
    before the field existed; it changes training only); anchor_sizes: per FPN level, finest first
    (`fit_anchor_sizes` fits them to a project's boxes; () = `ANCHOR_SIZES`); soft_nms_sigma: Gaussian soft-NMS of the
    final detections (`backend.models.tta.soft_nms`; 0 = off, as in checkpoints written before it existed); box_loss:
    the box head's regression loss in training (`backend.models.box_loss`: "smooth_l1", torchvision's and that of
    checkpoints written before the field existed, or "giou"; it changes training only); test_proposals: RPN proposals
    the box head scores per view and scale at inference (torchvision's 1,000 in checkpoints written before the field
    existed; the box head's cost follows it); bf16_inference: predict in bf16 autocast where the hardware has native
    bf16 (`backend.models.precision.autocast_device`; float32 elsewhere and in checkpoints written before the field).
    The inference fields are read at prediction time (`backend.models.detector_io.predict`).
    """

    num_classes: int
    min_size: int = 512
    max_size: int = 1024
    train_sizes: tuple[int, ...] = ()
    stride4: bool = True
    frozen_blocks: int = 3
    tta_views: int = 1
    roi_batch: int = 256
    anchor_sizes: tuple[tuple[int, ...], ...] = ()
    tta_scales: tuple[int, ...] = ()
    soft_nms_sigma: float = 0.0
    roi_positive_fraction: float = 0.25
    box_loss: str = "smooth_l1"
    test_proposals: int = 1000
    bf16_inference: bool = False

    def __post_init__(self):
        if self.tta_views not in VIEW_COUNTS:
            raise ValueError(f"tta_views must be one of {VIEW_COUNTS}, got {self.tta_views}")
        if self.box_loss not in BOX_LOSSES:
            raise ValueError(f"box_loss must be one of {BOX_LOSSES}, got {self.box_loss!r}")
        if self.test_proposals < 1:
            raise ValueError(f"test_proposals must be at least 1, got {self.test_proposals}")

    def as_dict(self) -> dict:
        return {**asdict(self), "train_sizes": list(self.train_sizes), "tta_scales": list(self.tta_scales),
                "anchor_sizes": [list(sizes) for sizes in self.anchor_sizes]}

    @classmethod
    def from_dict(cls, spec: dict) -> "DetectorSpec":
        """The inverse of `as_dict` (checkpoints written before a field existed get its default)."""
        return cls(**{**spec, "train_sizes": tuple(spec.get("train_sizes", ())),
                      "tta_scales": tuple(spec.get("tta_scales", ())),
                      "anchor_sizes": tuple(tuple(s) for s in spec.get("anchor_sizes", ()))})


def _freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d by a FrozenBatchNorm2d with the same statistics (small detection batches
    would otherwise wreck the ImageNet statistics)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            frozen.weight.copy_(child.weight.detach())
            frozen.bias.copy_(child.bias.detach())
            frozen.running_mean.copy_(child.running_mean)
            frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            _freeze_batchnorm(child)
    return module


class EfficientNetFPN(nn.Module):
    """(N, 3, H, W) normalised → OrderedDict of FPN maps (strides 4 or 8 up to 32), `out_channels` each."""

    out_channels = 96

    def __init__(self, pretrained: bool = True, stride4: bool = True, frozen_blocks: int = 0):
        super().__init__()
        net = _freeze_batchnorm(imagenet_backbone() if pretrained else random_backbone())
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.taps = {i: name for i, (name, _) in TAPS.items() if stride4 or i != 2}
        self.blocks = net._blocks[:max(self.taps) + 1]
        self.frozen_blocks = min(frozen_blocks, len(self.blocks))
        for module in (self.stem, *self.blocks[:frozen_blocks]):
            module.requires_grad_(False)
        self.fpn = FeaturePyramidNetwork([TAPS[i][1] for i in sorted(self.taps)], self.out_channels)

    @property
    def level_names(self) -> list[str]:
        return [self.taps[i] for i in sorted(self.taps)]

    @property
    def cacheable(self) -> bool:
        """Whether the stem and at least one block are frozen: their outputs (`prefix`) can be computed once per image
        and cached in training (`backend.training.cached_features`)."""
        return self.frozen_blocks > 0 and not any(p.requires_grad for p in self.stem.parameters())

    def prefix(self, x: torch.Tensor) -> "tuple[OrderedDict[str, torch.Tensor], torch.Tensor]":
        """(N, 3, H, W) normalised → the frozen stem and first `frozen_blocks` blocks: (their taps by level name,
        the last frozen block's output)."""
        x = self.stem(x)
        taps = OrderedDict()
        for i, block in enumerate(self.blocks[:self.frozen_blocks]):
            x = block(x)
            if i in self.taps:
                taps[self.taps[i]] = x
        return taps, x

    def suffix(self, taps: "dict[str, torch.Tensor]", x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        """The blocks after the frozen prefix, from its output `x` → every tap, finest level first."""
        taps = dict(taps)
        for i in range(self.frozen_blocks, len(self.blocks)):
            x = self.blocks[i](x)
            if i in self.taps:
                taps[self.taps[i]] = x
        return OrderedDict((name, taps[name]) for name in self.level_names)

    def features(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        """(N, 3, H, W) normalised → the backbone's taps before the FPN, finest level first."""
        return self.suffix(*self.prefix(x))

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        return self.fpn(self.features(x))


def build_detector(spec: DetectorSpec, pretrained: bool = True) -> FasterRCNN:
    """Faster R-CNN for `spec.num_classes` foreground classes (+ background)."""
    backbone = EfficientNetFPN(pretrained, spec.stride4, spec.frozen_blocks)
    levels = backbone.level_names
    sizes = spec.anchor_sizes if len(spec.anchor_sizes) == len(levels) else tuple(ANCHOR_SIZES[n] for n in levels)
    anchors = AnchorGenerator(sizes=sizes,
                              aspect_ratios=((0.5, 1.0, 2.0),) * len(levels))
    # one sample per RoI bin: the 7x7 bins of the small boxes are already finer than their feature map, and
    # RoIAlign's backward pass dominates a CPU training step with two
    roi_pool = MultiScaleRoIAlign(featmap_names=levels, output_size=7, sampling_ratio=1)
    model = FasterRCNN(backbone, num_classes=spec.num_classes + 1, rpn_anchor_generator=anchors,
                       box_roi_pool=roi_pool, min_size=(*spec.train_sizes, spec.min_size), max_size=spec.max_size,
                       rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=1000,
                       rpn_post_nms_top_n_test=spec.test_proposals,
                       box_batch_size_per_image=spec.roi_batch, box_positive_fraction=spec.roi_positive_fraction,
                       box_score_thresh=0.01, box_detections_per_img=300, image_mean=[0.485, 0.456, 0.406],
                       image_std=[0.229, 0.224, 0.225])
    with_box_loss(model.roi_heads, spec.box_loss)
    model.spec = spec
    return model
