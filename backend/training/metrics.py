"""Detection metrics: AP50 and COCO-style AP (mean over IoU 0.50:0.95), per class and overall.

Inputs per image: predictions {"boxes" (N, 4) xyxy, "scores" (N,), "labels" (N,)} and ground truth
{"boxes" (M, 4), "labels" (M,)}. AP is the all-point interpolated area under precision/recall.
"""

from __future__ import annotations

import numpy as np

from backend.core.detections import box_iou

IOU_THRESHOLDS = np.round(np.arange(0.5, 0.96, 0.05), 2)


def _average_precision(scores: np.ndarray, matched: np.ndarray, n_truth: int) -> float:
    if n_truth == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    tp = matched[order].astype(float)
    recall = np.cumsum(tp) / n_truth
    precision = np.cumsum(tp) / np.arange(1, len(tp) + 1)
    recall = np.concatenate(([0.0], recall, [1.0]))
    precision = np.concatenate(([1.0], precision, [0.0]))
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum((recall[1:] - recall[:-1]) * precision[1:]))


def detection_ap(predictions: list[dict], truths: list[dict], classes: list[int]) -> dict:
    """{"ap50", "ap", "per_class": {class: {"ap50", "ap"}}} over the given images."""
    per_class = {}
    for cls in classes:
        aps = []
        for threshold in IOU_THRESHOLDS:
            scores, matched, n_truth = [], [], 0
            for pred, truth in zip(predictions, truths):
                p_mask, t_mask = pred["labels"] == cls, truth["labels"] == cls
                p_boxes, p_scores, t_boxes = pred["boxes"][p_mask], pred["scores"][p_mask], truth["boxes"][t_mask]
                n_truth += len(t_boxes)
                used = np.zeros(len(t_boxes), bool)
                iou = box_iou(p_boxes, t_boxes) if len(p_boxes) and len(t_boxes) else np.zeros((len(p_boxes), 0))
                for i in np.argsort(-p_scores, kind="stable"):
                    hit = False
                    if iou.shape[1]:
                        candidates = np.where(~used & (iou[i] >= threshold))[0]
                        if candidates.size:
                            used[candidates[np.argmax(iou[i, candidates])]] = True
                            hit = True
                    scores.append(p_scores[i])
                    matched.append(hit)
            aps.append(_average_precision(np.array(scores), np.array(matched, bool), n_truth))
        per_class[cls] = {"ap50": round(aps[0], 4), "ap": round(float(np.nanmean(aps)), 4)}
    valid = [v for v in per_class.values() if not np.isnan(v["ap50"])]
    return {"ap50": round(float(np.mean([v["ap50"] for v in valid])), 4) if valid else 0.0,
            "ap": round(float(np.mean([v["ap"] for v in valid])), 4) if valid else 0.0,
            "per_class": per_class}
