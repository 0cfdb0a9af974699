"""A small box detector to retrain from corrected annotations: torchvision Faster R-CNN on an
EfficientNet-Lite0 (ImageNet, offline weights) + FPN backbone with frozen batch-norm statistics,
trained with flips (optionally all 8 dihedral transforms), multi-scale inputs and bf16 autocast on GPU.

Images are uint8 (H, W, 3); boxes float32 (N, 4) xyxy pixels; labels int64 (N,) in 1..C (0 = background).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.misc import FrozenBatchNorm2d

from backend.adapters.project_classifier import imagenet_backbone
from backend.core.cancel import NEVER, StopFlag
from backend.training.tta import VIEW_COUNTS, fuse, unview_boxes, view, view_boxes

log = logging.getLogger(__name__)
# EfficientNet-Lite0 blocks ending at strides 4, 8, 16, 32 → (FPN level name, channels)
TAPS = {2: ("0", 24), 4: ("1", 40), 10: ("2", 112), 15: ("3", 320)}
ANCHOR_SIZES = {"0": (8, 12), "1": (16, 24), "2": (32, 48), "3": (64, 128)}


@dataclass(frozen=True)
class DetectorSpec:
    """What a trained detector was built with (saved next to its weights, so serving rebuilds the same net).

    min_size: shorter image side at inference; train_sizes: further shorter sides sampled during
    training (multi-scale; torchvision uses the last entry, `min_size`, at inference); stride4: add a stride-4 FPN
    level for small objects; frozen_blocks: the stem and this many first backbone blocks keep their
    ImageNet weights (faster training, fewer parameters to overfit); tta_views: dihedral views fused at
    inference (1 = none, 2, 4 or 8; see `backend.training.tta`).
    """

    num_classes: int
    min_size: int = 512
    max_size: int = 1024
    train_sizes: tuple[int, ...] = ()
    stride4: bool = True
    frozen_blocks: int = 3
    tta_views: int = 1

    def __post_init__(self):
        if self.tta_views not in VIEW_COUNTS:
            raise ValueError(f"tta_views must be one of {VIEW_COUNTS}, got {self.tta_views}")

    def as_dict(self) -> dict:
        return {**asdict(self), "train_sizes": list(self.train_sizes)}


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
        net = _freeze_batchnorm(imagenet_backbone() if pretrained else _random_backbone())
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.taps = {i: name for i, (name, _) in TAPS.items() if stride4 or i != 2}
        self.blocks = net._blocks[:max(self.taps) + 1]
        for module in (self.stem, *self.blocks[:frozen_blocks]):
            module.requires_grad_(False)
        self.fpn = FeaturePyramidNetwork([TAPS[i][1] for i in sorted(self.taps)], self.out_channels)

    @property
    def level_names(self) -> list[str]:
        return [self.taps[i] for i in sorted(self.taps)]

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        x = self.stem(x)
        taps = OrderedDict()
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.taps:
                taps[self.taps[i]] = x
        return self.fpn(taps)


def _random_backbone():
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name("efficientnet-lite0")


def build_detector(spec: DetectorSpec, pretrained: bool = True) -> FasterRCNN:
    """Faster R-CNN for `spec.num_classes` foreground classes (+ background)."""
    backbone = EfficientNetFPN(pretrained, spec.stride4, spec.frozen_blocks)
    levels = backbone.level_names
    anchors = AnchorGenerator(sizes=tuple(ANCHOR_SIZES[n] for n in levels),
                              aspect_ratios=((0.5, 1.0, 2.0),) * len(levels))
    # one sample per RoI bin: the 7x7 bins of the small boxes are already finer than their feature map, and
    # RoIAlign's backward pass dominates a CPU training step with two
    roi_pool = MultiScaleRoIAlign(featmap_names=levels, output_size=7, sampling_ratio=1)
    model = FasterRCNN(backbone, num_classes=spec.num_classes + 1, rpn_anchor_generator=anchors,
                       box_roi_pool=roi_pool, min_size=(*spec.train_sizes, spec.min_size), max_size=spec.max_size,
                       rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=1000, box_batch_size_per_image=256,
                       box_score_thresh=0.01, box_detections_per_img=300, image_mean=[0.485, 0.456, 0.406],
                       image_std=[0.229, 0.224, 0.225])
    model.spec = spec
    return model


@dataclass(frozen=True)
class TrainConfig:
    """epochs and time_budget_s bound the run (whichever ends first); lr is the peak learning rate;
    dihedral adds 90-degree turns and vertical flips (top-down imagery) to the horizontal flips;
    colour_jitter is the largest relative change of brightness, contrast and saturation (0 = off)."""

    epochs: int = 40
    batch_size: int = 4
    lr: float = 0.02
    time_budget_s: float = 600.0
    dihedral: bool = False
    colour_jitter: float = 0.2
    seed: int = 0


def _to_target(boxes: np.ndarray, labels: np.ndarray, device: str) -> dict:
    return {"boxes": torch.as_tensor(boxes, dtype=torch.float32, device=device).reshape(-1, 4),
            "labels": torch.as_tensor(labels, dtype=torch.int64, device=device)}


def jitter_colour(image: torch.Tensor, rng: np.random.Generator, strength: float) -> torch.Tensor:
    """Random brightness, contrast and saturation factors in [1 - strength, 1 + strength], in random order.
    image: float (3, H, W) in [0, 1] → same shape, clamped to [0, 1]."""
    if strength <= 0:
        return image
    factors = rng.uniform(1 - strength, 1 + strength, size=3)
    for op in rng.permutation(3):
        if op == 0:
            image = image * factors[0]
        else:
            grey = (image * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0, keepdim=True)
            anchor = grey.mean() if op == 1 else grey
            image = anchor + (image - anchor) * factors[op]
        image = image.clamp(0, 1)
    return image


def augment(image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator,
            dihedral: bool, colour_jitter: float = 0.0) -> tuple[torch.Tensor, np.ndarray]:
    """A random view (`backend.training.tta.view`): horizontal flip; with `dihedral` also vertical flip and
    transpose (all 8 square symmetries); then colour jitter of the given strength.
    image: uint8 (H, W, 3); boxes float32 (N, 4) xyxy pixels → (float (3, H', W') in [0, 1], boxes in the view)."""
    k = int(rng.random() < 0.5)
    if dihedral:
        k |= int(rng.random() < 0.5) << 1 | int(rng.random() < 0.5) << 2
    height, width = image.shape[:2]
    tensor = torch.from_numpy(view(image, k)).permute(2, 0, 1).float().div(255)
    return jitter_colour(tensor, rng, colour_jitter), view_boxes(boxes, k, width, height)


def learning_rate(progress: float, peak: float, warmup: float = 0.1) -> float:
    """Linear warm-up to `peak` over the first `warmup` of training, then cosine decay to 1 % of it."""
    if progress < warmup:
        return peak * (0.1 + 0.9 * progress / warmup)
    t = min(1.0, (progress - warmup) / (1 - warmup))
    return peak * (0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * t)))


def train_detector(model: FasterRCNN, items: list[tuple[np.ndarray, np.ndarray, np.ndarray]], device: str,
                   config: TrainConfig = TrainConfig(), progress=None, stop: StopFlag = NEVER) -> dict:
    """SGD with warm-up and cosine decay, bf16 autocast on CUDA.

    The schedule runs on progress = max(steps done / steps planned, time used / `config.time_budget_s`), so
    a run cut short by its time budget still ends with a fully decayed learning rate.
    items: (uint8 (H, W, 3) image, float32 (N, 4) xyxy boxes, int64 (N,) labels in 1..C).
    progress: optional callable(epoch, epochs, loss) called after every epoch. `stop` is checked before every
    step (`Cancelled` ends the run). Returns training stats.
    """
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=1e-4)
    batch_size = config.batch_size
    steps = max(1, config.epochs * ((len(items) + batch_size - 1) // batch_size))
    amp = device.startswith("cuda")
    started, step, losses, epoch, done = time.perf_counter(), 0, [], 0, 0.0
    while done < 1.0 and epoch < config.epochs:
        epoch += 1
        order = rng.permutation(len(items))
        for start in range(0, len(items), batch_size):
            stop.check()
            done = max(step / steps, (time.perf_counter() - started) / config.time_budget_s)
            if done >= 1.0:
                break
            for group in optimiser.param_groups:
                group["lr"] = learning_rate(done, config.lr)
            images, targets = [], []
            for i in order[start:start + batch_size]:
                image, boxes = augment(items[i][0], items[i][1], rng, config.dihedral, config.colour_jitter)
                images.append(image.to(device))
                targets.append(_to_target(boxes, items[i][2], device))
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                loss = sum(model(images, targets).values())
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            optimiser.step()
            step += 1
            losses.append(float(loss.detach()))
        mean_loss = float(np.mean(losses[-20:])) if losses else float("nan")
        log.info("epoch %d/%d: loss %.3f (%.0f s)", epoch, config.epochs, mean_loss, time.perf_counter() - started)
        if progress is not None:
            progress(epoch, config.epochs, mean_loss)
    if step < steps:
        log.info("time budget reached after %d of %d steps", step, steps)
    model.eval()
    return {"epochs": epoch, "steps": step, "final_loss": round(float(np.mean(losses[-20:])), 4) if losses else None,
            "train_s": round(time.perf_counter() - started, 2)}


def predict(model: FasterRCNN, images: list[np.ndarray], device: str, batch_size: int = 8) -> list[dict]:
    """uint8 (H, W, 3) images → [{"boxes": float32 (N, 4) xyxy pixels, "scores": (N,), "labels": int64 (N,)}]
    as numpy, in batches of `batch_size`; with `model.spec.tta_views` > 1 the detections of that many dihedral
    views of each image, fused."""
    views = getattr(getattr(model, "spec", None), "tta_views", 1)
    if views == 1:
        return _predict_views(model, images, device, batch_size)
    per_view = [_predict_views(model, [view(image, k) for image in images], device, batch_size)
                for k in range(views)]
    fused = []
    for j, image in enumerate(images):
        height, width = image.shape[:2]
        fused.append(fuse(np.concatenate([unview_boxes(per_view[k][j]["boxes"], k, width, height)
                                          for k in range(views)]),
                          np.concatenate([per_view[k][j]["scores"] for k in range(views)]),
                          np.concatenate([per_view[k][j]["labels"] for k in range(views)]), views))
    return fused


@torch.inference_mode()
def _predict_views(model: FasterRCNN, images: list[np.ndarray], device: str, batch_size: int) -> list[dict]:
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        batch = [torch.from_numpy(image).to(device).permute(2, 0, 1).float().div(255)
                 for image in images[start:start + batch_size]]
        for result in model(batch):
            out.append({"boxes": result["boxes"].float().cpu().numpy(),
                        "scores": result["scores"].float().cpu().numpy(), "labels": result["labels"].cpu().numpy()})
    return out
