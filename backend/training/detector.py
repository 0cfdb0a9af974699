"""A small box detector to retrain from corrected annotations: torchvision Faster R-CNN on an
EfficientNet-Lite0 (ImageNet, offline weights) + FPN backbone, trained with flips and mixed precision on GPU.

Images are uint8 (H, W, 3); boxes float32 (N, 4) xyxy pixels; labels int64 (N,) in 1..C (0 = background).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

import numpy as np
import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign

from backend.adapters.project_classifier import imagenet_backbone

log = logging.getLogger(__name__)
TAPS = {4: "0", 10: "1", 15: "2"}  # EfficientNet-Lite0 blocks ending at strides 8, 16, 32
TAP_CHANNELS = [40, 112, 320]


class EfficientNetFPN(nn.Module):
    """(N, 3, H, W) normalised → OrderedDict of FPN maps at strides 8, 16, 32 with `out_channels` each."""

    out_channels = 96

    def __init__(self, pretrained: bool = True):
        super().__init__()
        net = imagenet_backbone() if pretrained else _random_backbone()
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = net._blocks
        self.fpn = FeaturePyramidNetwork(TAP_CHANNELS, self.out_channels)

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        x = self.stem(x)
        taps = OrderedDict()
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in TAPS:
                taps[TAPS[i]] = x
        return self.fpn(taps)


def _random_backbone():
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name("efficientnet-lite0")


def build_detector(num_classes: int, pretrained: bool = True, min_size: int = 400, max_size: int = 800) -> FasterRCNN:
    """Faster R-CNN for `num_classes` foreground classes (+ background)."""
    anchors = AnchorGenerator(sizes=((16, 24), (32, 48), (64, 128)), aspect_ratios=((0.5, 1.0, 2.0),) * 3)
    roi_pool = MultiScaleRoIAlign(featmap_names=["0", "1", "2"], output_size=7, sampling_ratio=2)
    return FasterRCNN(EfficientNetFPN(pretrained), num_classes=num_classes + 1, rpn_anchor_generator=anchors,
                      box_roi_pool=roi_pool, min_size=min_size, max_size=max_size, box_detections_per_img=300,
                      image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])


def _to_target(boxes: np.ndarray, labels: np.ndarray, device: str) -> dict:
    return {"boxes": torch.as_tensor(boxes, dtype=torch.float32, device=device).reshape(-1, 4),
            "labels": torch.as_tensor(labels, dtype=torch.int64, device=device)}


def _augment(image: torch.Tensor, boxes: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, np.ndarray]:
    """Random horizontal/vertical flips (aerial and natural images alike)."""
    _, h, w = image.shape
    boxes = boxes.copy()
    if rng.random() < 0.5:
        image = image.flip(-1)
        boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
    if rng.random() < 0.5:
        image = image.flip(-2)
        boxes[:, [1, 3]] = h - boxes[:, [3, 1]]
    return image, boxes


def train_detector(model: FasterRCNN, items: list[tuple[np.ndarray, np.ndarray, np.ndarray]], device: str,
                   epochs: int = 20, batch_size: int = 4, lr: float = 0.01, time_budget_s: float = 600.0,
                   seed: int = 0) -> dict:
    """SGD with warm-up and cosine decay; stops early at `time_budget_s`. Returns training stats."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    steps = max(1, epochs * ((len(items) + batch_size - 1) // batch_size))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps, pct_start=0.1)
    amp = device.startswith("cuda")
    tensors = [torch.from_numpy(image).permute(2, 0, 1).float().div(255) for image, _, _ in items]
    started, step, losses = time.perf_counter(), 0, []
    for epoch in range(epochs):
        order = rng.permutation(len(items))
        for start in range(0, len(items), batch_size):
            batch = order[start:start + batch_size]
            images, targets = [], []
            for i in batch:
                image, boxes = _augment(tensors[i], items[i][1], rng)
                images.append(image.to(device))
                targets.append(_to_target(boxes, items[i][2], device))
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                loss = sum(model(images, targets).values())
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            optimiser.step()
            if step < steps - 1:
                schedule.step()
            step += 1
            losses.append(float(loss.detach()))
        log.info("epoch %d/%d: loss %.3f (%.0f s)", epoch + 1, epochs, np.mean(losses[-20:]),
                 time.perf_counter() - started)
        if time.perf_counter() - started > time_budget_s:
            log.info("time budget reached after %d epochs", epoch + 1)
            break
    model.eval()
    return {"epochs": epoch + 1, "steps": step, "final_loss": round(float(np.mean(losses[-20:])), 4),
            "train_s": round(time.perf_counter() - started, 2)}


@torch.inference_mode()
def predict(model: FasterRCNN, images: list[np.ndarray], device: str) -> list[dict]:
    """uint8 images → [{"boxes": float (N, 4) xyxy, "scores": (N,), "labels": int (N,)}] as numpy."""
    model.eval()
    out = []
    for image in images:
        tensor = torch.from_numpy(image).permute(2, 0, 1).float().div(255).to(device)
        (result,) = model([tensor])
        out.append({k: v.float().cpu().numpy() if k != "labels" else v.cpu().numpy() for k, v in result.items()})
    return out
