"""Exported Label Studio tasks for the review tests, built with the real converters
(`backend.labelstudio.results.detections_to_results`)."""

from __future__ import annotations

import numpy as np

from backend.core.detections import Detections
from backend.core.ontology import Control, Ontology
from backend.labelstudio.results import detections_to_results

W, H = 400, 300
LABELS = ("cat", "dog")
RECT = Control("box", "RectangleLabels", "image", "image", LABELS)
BRUSH = Control("brush", "BrushLabels", "image", "image", LABELS)
POLY = Control("poly", "PolygonLabels", "image", "image", LABELS)
CHOICE = Control("kind", "Choices", "image", "image", ("indoor", "outdoor"))
ONTOLOGY = Ontology((RECT, BRUSH, POLY, CHOICE))


def box_mask(box, size=(W, H)) -> np.ndarray:
    """bool (H, W) mask filling the integer box (x1, y1, x2, y2)."""
    m = np.zeros((size[1], size[0]), bool)
    x1, y1, x2, y2 = (int(v) for v in box)
    m[y1:y2, x1:x2] = True
    return m


def regions(boxes, labels, controls=(RECT,), scores=None, size=(W, H), masks=False) -> list[dict]:
    """Label Studio results for `boxes` (pixel xyxy) with `labels` for the given controls."""
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    scores = np.full(len(boxes), 0.9, np.float32) if scores is None else np.asarray(scores, np.float32)
    stacked = np.stack([box_mask(b, size) for b in boxes]) if masks and len(boxes) else None
    if masks and not len(boxes):
        stacked = np.zeros((0, size[1], size[0]), bool)
    return detections_to_results(Detections(boxes, scores, tuple(labels), size, stacked), controls)


def task(task_id, annotation=None, predictions=(), annotator=1, created="2026-03-02T10:00:00Z",
         lead_time=12.5, cancelled=False, ground_truth=False, parent=None, image=None) -> dict:
    """One exported task. `annotation`: results or None; `predictions`: [(results, model_version, score,
    created_at)] created before the annotation unless told."""
    preds = [{"id": 1000 * task_id + i, "result": r, "model_version": v, "score": s, "created_at": c}
             for i, (r, v, s, c) in enumerate(predictions)]
    anns = []
    if annotation is not None:
        anns.append({"id": 10 * task_id, "result": annotation, "completed_by": annotator, "created_at": created,
                     "updated_at": created, "was_cancelled": cancelled, "ground_truth": ground_truth,
                     "lead_time": lead_time, "parent_prediction": parent})
    return {"id": task_id, "data": {"image": image or f"/data/upload/1/{task_id}.png"}, "annotations": anns,
            "predictions": preds}


def prediction(results, version="v1", score=None, created="2026-03-01T09:00:00Z"):
    scores = [r["score"] for r in results if "score" in r]
    return (results, version, float(np.mean(scores)) if score is None and scores else (score or 0.0), created)


def colour_features(crops: np.ndarray) -> np.ndarray:
    """A real (if simple) feature function: per-channel mean and standard deviation of each crop.
    float32 (N, 3, S, S) in [0, 1] → float32 (N, 6)."""
    crops = np.asarray(crops, np.float32)
    return np.concatenate([crops.mean(axis=(2, 3)), crops.std(axis=(2, 3))], axis=1)


def photo_project(n_tasks: int = 24, seed: int = 0):
    """(export, ontology, load_image): tasks on two real photos (skimage.data chelsea and coffee) with cat and cup
    boxes, two annotators over two days, predictions of two model versions made before the annotations; some
    predictions were corrected (adjusted, relabelled, deleted, added)."""
    from skimage import data

    photos = {"chelsea": data.chelsea(), "coffee": data.coffee()}
    control = Control("box", "RectangleLabels", "image", "image", ("cat", "cup", "<b>&\"odd'"))
    ontology = Ontology((control,))
    rng = np.random.default_rng(seed)
    tasks = []
    for t in range(1, n_tasks + 1):
        photo = "chelsea" if t % 2 else "coffee"
        h, w = photos[photo].shape[:2]
        label = "cat" if photo == "chelsea" else "cup"
        x, y = rng.uniform(0, w / 3), rng.uniform(0, h / 3)
        box = [x, y, x + w / 2, y + h / 2]
        version, made = ("v1", "2026-03-01T09:00:00Z") if t <= n_tasks // 2 else ("v2", "2026-03-02T09:00:00Z")
        predicted = regions([box, [5, 5, 60, 60]], [label, label], (control,), scores=[0.9, 0.4], size=(w, h))
        kind = t % 6
        if kind == 0:  # relabelled
            annotated = regions([box], ["cup" if label == "cat" else "cat"], (control,), size=(w, h))
        elif kind == 1:  # adjusted + an added region
            annotated = regions([np.add(box, [20, 0, 20, 0]), [w - 50, h - 50, w - 5, h - 5]], [label, label],
                                (control,), size=(w, h))
        else:  # accepted, the weak second prediction deleted
            annotated = regions([box], [label], (control,), size=(w, h))
        created = f"2026-03-0{2 + t % 2}T12:00:00Z"
        tasks.append(task(t, annotated, [prediction(predicted, version, created=made)], annotator=1 + t % 2,
                          created=created, image=f"skimage://{photo}"))
    tasks.append(task(n_tasks + 1, None, [prediction(regions([[1, 1, 9, 9]], ["cat"], (control,)))]))

    def load_image(t):
        return photos[t.image.split("//")[1]]

    return tasks, ontology, load_image
