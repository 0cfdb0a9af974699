"""The box head's regression loss: torchvision's smooth L1 of the encoded deltas, or the generalised IoU (GIoU,
Rezatofighi et al., CVPR 2019) of the boxes they decode to, which trains the placement that an annotator's "accept
unchanged" asks for (IoU with the true box) instead of each coordinate on its own.

A proposal's deltas (dx, dy, dw, dh) encode a box relative to it (torchvision's `BoxCoder`, weights (10, 10, 5, 5)):
centre shifted by (dx / 10, dy / 10) of the proposal's sides, sides scaled by exp(dw / 5), exp(dh / 5). IoU and GIoU
do not change under a shift or an axis-aligned scaling applied to both boxes, so the predicted and target deltas are
decoded against one unit proposal (`decode_unit`): no proposal boxes needed, exactly the GIoU of the image boxes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import generalized_box_iou_loss

BOX_LOSSES = ("smooth_l1", "giou")
GIOU_WEIGHT = 10.0  # as mmdetection's Faster R-CNN with GIoU (its L1 at weight 1 is torchvision's smooth L1 here)
_CLIP = math.log(1000.0 / 16)  # torchvision's bbox_xform_clip


def decode_unit(deltas: torch.Tensor, weights: tuple[float, float, float, float]) -> torch.Tensor:
    """(N, 4) encoded deltas → (N, 4) float32 xyxy boxes relative to the unit proposal (0, 0, 1, 1) centred at 0."""
    deltas = deltas.float()
    wx, wy, ww, wh = weights
    cx, cy = deltas[:, 0] / wx, deltas[:, 1] / wy
    w = torch.exp((deltas[:, 2] / ww).clamp(max=_CLIP))
    h = torch.exp((deltas[:, 3] / wh).clamp(max=_CLIP))
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1)


def giou_loss(class_logits: torch.Tensor, box_regression: torch.Tensor, labels: list[torch.Tensor],
              regression_targets: list[torch.Tensor], weights: tuple[float, float, float, float],
              weight: float = GIOU_WEIGHT) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's `fastrcnn_loss` with the box term `weight` x sum over positive samples of (1 - GIoU), over all
    sampled RoIs (as its smooth L1 is). class_logits (N, C); box_regression (N, 4C); labels / regression_targets:
    per image (n_i,) int64 and (n_i, 4), sum n_i = N. Returns (classification loss, box loss), scalars."""
    labels = torch.cat(labels, dim=0)
    targets = torch.cat(regression_targets, dim=0)
    classification = F.cross_entropy(class_logits, labels)
    positive = torch.where(labels > 0)[0]
    predicted = box_regression.reshape(len(labels), -1, 4)[positive, labels[positive]]
    box = generalized_box_iou_loss(decode_unit(predicted, weights), decode_unit(targets[positive], weights),
                                   reduction="sum")
    return classification, weight * box / labels.numel()


class GIoURoIHeads(RoIHeads):
    """torchvision's RoI heads whose training loss is `giou_loss`; inference is unchanged. Boxes only (no mask or
    keypoint branch)."""

    def forward(self, features, proposals, image_shapes, targets=None):
        if not self.training:
            return super().forward(features, proposals, image_shapes, targets)
        proposals, _, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        classification, box = giou_loss(class_logits, box_regression, labels, regression_targets,
                                        self.box_coder.weights)
        return [], {"loss_classifier": classification, "loss_box_reg": box}


def with_box_loss(heads: RoIHeads, name: str) -> RoIHeads:
    """`heads` training with the box loss `name` (one of `BOX_LOSSES`): the same module, its class switched to
    `GIoURoIHeads` (which adds no state) for "giou"."""
    if name not in BOX_LOSSES:
        raise ValueError(f"box_loss must be one of {BOX_LOSSES}, got {name!r}")
    heads.__class__ = GIoURoIHeads if name == "giou" else RoIHeads
    return heads
