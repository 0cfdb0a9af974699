"""What correcting a pre-label to the ground truth costs an annotator, from published per-action times: the figure
the backend minimises when it picks each label's score cut and source (`backend.training.comparison`), and the
annotation-session benchmark's cost (`bench/annotation_session.py`).

A pre-labelled region is matched one-to-one to a ground-truth box (Hungarian matching on IoU, pairs with IoU >= 0.3):
- matched, IoU >= `ACCEPT_IOU`, same label: verify it (`verify`);
- matched, IoU >= `ACCEPT_IOU`, other label: verify and relabel;
- matched, IoU in [0.3, `ACCEPT_IOU`): verify and adjust (label fixed too when it differs);
- unmatched region: verify and delete; unmatched ground-truth box: draw it.
Without pre-labels every ground-truth box is drawn. Image-level work the same in every condition (opening the task,
submitting) is left out, so savings are savings of box work.

Sources of the times (seconds):
- `verify` 1.6: a yes/no box verification (Papadopoulos, Uijlings, Keller, Ferrari, "We don't need no
  bounding-boxes", CVPR 2016).
- drawing, fast model 7.0: extreme clicking (Papadopoulos et al., "Extreme clicking for efficient object
  annotation", ICCV 2017: 7 s per box, 5x faster than the traditional way).
- drawing, traditional model 25.5: drawing one box on Mechanical Turk (Su, Deng, Fei-Fei, "Crowdsourcing
  annotations for visual object detection", AAAI HCOMP workshop 2012; 42 s per box with their two verification steps,
  which the ICCV 2017 paper quotes as about 35 s for one high-quality box).
- Assumptions, no published figure checked: adjusting a box costs half a drawing (two of four extreme points or
  corners moved); deleting 1.0 (select, key); relabelling 1.6 (one more choice).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from backend.core.detections import box_iou

ACCEPT_IOU = 0.7  # a pre-labelled box at least this close to the truth is accepted as it is
MATCH_IOU = 0.3  # below this a region does not count as an attempt at that object


@dataclass(frozen=True)
class CostModel:
    name: str
    draw: float
    verify: float = 1.6
    delete: float = 1.0
    relabel: float = 1.6

    @property
    def adjust(self) -> float:
        return self.draw / 2


FAST = CostModel("fast drawing (extreme clicking, 7.0 s/box)", draw=7.0)
TRADITIONAL = CostModel("traditional drawing (25.5 s/box)", draw=25.5)
MODELS = {"fast": FAST, "traditional": TRADITIONAL}


def drawing_model(draw_seconds: float) -> CostModel:
    """The cost model of annotators who draw a box in `draw_seconds` (a project's `train_draw_seconds`): `FAST` or
    `TRADITIONAL` when it is theirs, the published verify / delete / relabel times otherwise. 0 (the measured time
    asked for, none known: `backend.review.drawing`) is `FAST`."""
    if not draw_seconds:
        return FAST
    for model in MODELS.values():
        if model.draw == draw_seconds:
            return model
    return CostModel(f"{draw_seconds:g} s per drawn box (train_draw_seconds)", draw=float(draw_seconds))


ACTIONS = ("accept", "relabel", "adjust", "adjust_relabel", "delete", "draw")


def actions(pred_boxes, pred_labels, true_boxes, true_labels) -> dict[str, int]:
    """Counts of each of `ACTIONS` needed to turn the regions into the truth. Boxes float (N, 4) xyxy in one
    coordinate frame (pixels or percent); labels sequences of label values."""
    pred_boxes = np.asarray(pred_boxes, float).reshape(-1, 4)
    true_boxes = np.asarray(true_boxes, float).reshape(-1, 4)
    iou = box_iou(pred_boxes, true_boxes) if len(pred_boxes) and len(true_boxes) else \
        np.zeros((len(pred_boxes), len(true_boxes)))
    rows, cols = linear_sum_assignment(-iou) if iou.size else (np.zeros(0, int), np.zeros(0, int))
    pairs = [(r, c) for r, c in zip(rows, cols) if iou[r, c] >= MATCH_IOU]
    counts = dict.fromkeys(ACTIONS, 0)
    counts["delete"], counts["draw"] = len(pred_boxes) - len(pairs), len(true_boxes) - len(pairs)
    for r, c in pairs:
        same = pred_labels[r] == true_labels[c]
        if iou[r, c] >= ACCEPT_IOU:
            counts["accept" if same else "relabel"] += 1
        else:
            counts["adjust" if same else "adjust_relabel"] += 1
    return counts


def seconds(counts: dict[str, int], model: CostModel) -> float:
    """Annotator seconds for the action counts of one task under `model` (every region shown is verified once)."""
    per_action = {"accept": model.verify, "relabel": model.verify + model.relabel,
                  "adjust": model.verify + model.adjust, "adjust_relabel": model.verify + model.adjust + model.relabel,
                  "delete": model.verify + model.delete, "draw": model.draw}
    return float(sum(per_action[a] * counts.get(a, 0) for a in ACTIONS))


def manual_seconds(n_true: int, model: CostModel) -> float:
    """Drawing every ground-truth box without pre-labels."""
    return model.draw * n_true
