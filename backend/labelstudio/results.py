"""Pure converters between `Detections` (pixel xyxy) and Label Studio result JSON (percent).

This is the only place percent coordinates exist. Every region carries `original_width`,
`original_height`, `image_rotation` 0 and its own `score`.
"""

from __future__ import annotations

import uuid
from typing import Any, Iterable

import cv2
import numpy as np

from backend.core.sizes import Size
from backend.core.detections import Detections, mask_box
from backend.core.ontology import BOX_RESULT_TYPES, Control
from backend.labelstudio.rle import decode_mask, encode_mask


def detections_to_results(dets: Detections, controls: Iterable[Control], polygon_tolerance: float = 1.0) -> list[dict]:
    """Regions for every control that can show them.

    Rectangles/keypoints for all detections; brush and polygon regions only for detections
    with masks; Choices from the labels present. A detection whose label is not in a
    control's labels is skipped for that control (labels never invented).
    """
    results: list[dict] = []
    for control in controls:
        convert = _CONVERTERS[control.tag]
        results.extend(convert(dets, control, polygon_tolerance))
    return results


def task_prediction(results: list[dict], model_version: str) -> dict:
    """One entry of `/predict`'s `results`: regions plus the task score (mean region score)."""
    scores = [r["score"] for r in results if "score" in r]
    return {"result": results, "score": float(np.mean(scores)) if scores else 0.0, "model_version": model_version}


def _region(control: Control, dets: Detections, score: float, value: dict) -> dict:
    w, h = dets.image_size
    return {
        "id": uuid.uuid4().hex[:10],
        "from_name": control.name,
        "to_name": control.to_name,
        "type": control.result_type,
        "original_width": int(w),
        "original_height": int(h),
        "image_rotation": 0,
        "score": round(float(score), 4),
        "value": value,
    }


def _percent(x: float, size: int) -> float:
    return float(np.clip(x / size * 100.0, 0.0, 100.0))


def _rectangles(dets: Detections, control: Control, _tol: float) -> list[dict]:
    w, h = dets.image_size
    out = []
    for (x1, y1, x2, y2), score, label in zip(dets.xyxy, dets.scores, dets.labels):
        if label not in control.labels:
            continue
        value = {
            "x": _percent(x1, w), "y": _percent(y1, h),
            "width": _percent(x2 - x1, w), "height": _percent(y2 - y1, h),
            "rotation": 0, "rectanglelabels": [label],
        }
        out.append(_region(control, dets, score, value))
    return out


def _keypoints(dets: Detections, control: Control, _tol: float) -> list[dict]:
    w, h = dets.image_size
    out = []
    for (x1, y1, x2, y2), score, label in zip(dets.xyxy, dets.scores, dets.labels):
        if label in control.labels:
            value = {"x": _percent((x1 + x2) / 2, w), "y": _percent((y1 + y2) / 2, h),
                     "width": 1.0, "keypointlabels": [label]}
            out.append(_region(control, dets, score, value))
    return out


def mask_at_size(mask: np.ndarray, image_size: Size) -> np.ndarray:
    """bool (h, w) mask → bool (H, W) for image_size (W, H) (nearest neighbour; no copy when equal)."""
    w, h = image_size
    if mask.shape == (h, w):
        return mask
    return cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)


def _brushes(dets: Detections, control: Control, _tol: float) -> list[dict]:
    if dets.masks is None:
        return []
    out = []
    for mask, score, label in zip(dets.masks, dets.scores, dets.labels):
        if label in control.labels and mask.any():  # one full-size mask at a time: RLE is at image size
            value = {"format": "rle", "rle": encode_mask(mask_at_size(mask, dets.image_size)), "brushlabels": [label]}
            out.append(_region(control, dets, score, value))
    return out


def mask_to_polygons(mask: np.ndarray, tolerance: float = 1.0, min_area: float = 4.0) -> list[np.ndarray]:
    """bool (H, W) mask → outer contours as float (K, 2) pixel (x, y) arrays, largest first."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polys = []
    for contour in sorted(contours, key=cv2.contourArea, reverse=True):
        if tolerance > 0:
            contour = cv2.approxPolyDP(contour, tolerance, True)
        if len(contour) >= 3 and cv2.contourArea(contour) >= min_area:
            polys.append(contour.reshape(-1, 2).astype(np.float32))
    return polys


def _polygons(dets: Detections, control: Control, tol: float) -> list[dict]:
    if dets.masks is None:
        return []
    w, h = dets.image_size
    out = []
    for mask, score, label in zip(dets.masks, dets.scores, dets.labels):
        if label not in control.labels:
            continue
        scale = mask.shape[1] / w if w else 1.0  # polygons are traced at the mask's resolution
        for poly in mask_to_polygons(mask, tol * scale, 4.0 * scale * scale):
            points = [[_percent(x, mask.shape[1]), _percent(y, mask.shape[0])] for x, y in poly]
            out.append(_region(control, dets, score, {"points": points, "closed": True, "polygonlabels": [label]}))
    return out


def _choices(dets: Detections, control: Control, _tol: float) -> list[dict]:
    best: dict[str, float] = {}
    for score, label in zip(dets.scores, dets.labels):
        if label in control.labels:
            best[label] = max(best.get(label, 0.0), float(score))
    if not best:
        return []
    ranked = sorted(best, key=best.get, reverse=True)
    chosen = ranked if control.multiple else ranked[:1]
    return [_region(control, dets, best[chosen[0]], {"choices": chosen})]


_CONVERTERS = {
    "RectangleLabels": _rectangles,
    "KeyPointLabels": _keypoints,
    "BrushLabels": _brushes,
    "PolygonLabels": _polygons,
    "Choices": _choices,
}


def results_to_detections(results: list[dict[str, Any]], image_size: Size | None = None,
                          with_masks: bool = False) -> Detections:
    """Label Studio regions → `Detections` (the inverse of the converters above).

    Rectangles give boxes; brush and polygon regions give masks and their bounding boxes;
    Choices and keypoints are skipped. `image_size` defaults to the regions' `original_*`.
    Raises `ValueError` naming the region when one is malformed.
    """
    boxes, scores, labels, masks = [], [], [], []
    size = image_size
    for i, region in enumerate(results):
        kind = str(region.get("type", "")).lower()
        if kind not in BOX_RESULT_TYPES:
            continue
        try:
            value = region["value"]
            rw, rh = int(region.get("original_width") or size[0]), int(region.get("original_height") or size[1])
            size = size or (rw, rh)
            w, h = size
            label = value[kind][0]
            mask = None
            if kind == "rectanglelabels":
                x1, y1 = value["x"] / 100 * w, value["y"] / 100 * h
                box = [x1, y1, x1 + value["width"] / 100 * w, y1 + value["height"] / 100 * h]
                if with_masks:
                    mask = np.zeros((h, w), bool)
                    mask[int(round(box[1])):int(round(box[3])), int(round(box[0])):int(round(box[2]))] = True
            else:
                mask = _region_mask(kind, value, w, h)
                box = mask_box(mask)
                if box is None:
                    continue
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ValueError(f"region {i} ({kind}) is malformed: {exc!r}") from None
        boxes.append(box)
        scores.append(float(region.get("score", 1.0)))
        labels.append(label)
        masks.append(mask)
    if size is None:
        return Detections.empty((0, 0))
    stacked = np.stack(masks) if with_masks and masks else (np.zeros((0, size[1], size[0]), bool) if with_masks else None)
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), scores, labels, size, stacked)


def _region_mask(kind: str, value: dict, w: int, h: int) -> np.ndarray:
    if kind == "brushlabels":
        if value.get("format", "rle") != "rle":
            raise ValueError(f"unsupported brush format {value.get('format')!r}")
        return decode_mask(value["rle"], w, h)
    points = np.array(value["points"], np.float64).reshape(-1, 2) / 100 * [w, h]
    canvas = np.zeros((h, w), np.uint8)
    cv2.fillPoly(canvas, [np.round(points).astype(np.int32)], 1)
    return canvas.astype(bool)
