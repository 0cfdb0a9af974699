"""One-to-one matching of prediction regions to annotation regions of the same task.

Rules (used by acceptance, suspicious and routing alike):
- regions of different controls (`from_name`) never match;
- pass 1 pairs regions with the SAME label, pass 2 the rest with ANOTHER label; each pass is greedy by
  descending box IoU and keeps pairs with IoU >= `MATCH_IOU` (0.5);
- a pair of the same label with IoU >= `UNCHANGED_IOU` (0.9) counts as unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.core.detections import box_iou
from backend.review.export import Regions

MATCH_IOU = 0.5
UNCHANGED_IOU = 0.9


@dataclass(frozen=True)
class Pair:
    """A prediction region `prediction` (index) paired with annotation region `annotation` (index)."""

    prediction: int
    annotation: int
    iou: float
    same_label: bool


def region_iou(prediction: Regions, annotation: Regions) -> np.ndarray:
    """float64 (N, M) box IoU between prediction and annotation regions; 0 across different controls."""
    iou = box_iou(prediction.xyxy, annotation.xyxy)
    if iou.size:
        same_control = np.array(prediction.controls, object)[:, None] == np.array(annotation.controls, object)[None]
        iou = np.where(same_control, iou, 0.0)
    return iou.reshape(len(prediction), len(annotation))


def greedy_pairs(iou: np.ndarray, allowed: np.ndarray, min_iou: float,
                 used_rows: np.ndarray, used_cols: np.ndarray) -> list[tuple[int, int, float]]:
    """Greedy one-to-one pairs (row, column, IoU) by descending IoU among `allowed` cells with IoU >= `min_iou`
    whose row and column are still unused; marks the rows and columns it takes in `used_rows` / `used_cols`."""
    rows, cols = np.nonzero(allowed & (iou >= min_iou))
    order = np.lexsort((cols, rows, -iou[rows, cols]))
    out = []
    for r, c in zip(rows[order], cols[order]):
        if not used_rows[r] and not used_cols[c]:
            used_rows[r] = used_cols[c] = True
            out.append((int(r), int(c), float(iou[r, c])))
    return out


def match(prediction: Regions, annotation: Regions, min_iou: float = MATCH_IOU) -> list[Pair]:
    """Pairs of the two passes (same label first, then another label), IoU >= `min_iou`."""
    iou = region_iou(prediction, annotation)
    same = np.array(prediction.labels, object)[:, None] == np.array(annotation.labels, object)[None]
    same = same.reshape(iou.shape)
    used_p, used_a = np.zeros(len(prediction), bool), np.zeros(len(annotation), bool)
    pairs = [Pair(p, a, v, True) for p, a, v in greedy_pairs(iou, same, min_iou, used_p, used_a)]
    pairs += [Pair(p, a, v, False) for p, a, v in greedy_pairs(iou, ~same, min_iou, used_p, used_a)]
    return pairs
