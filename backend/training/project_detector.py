"""Train a project's specialised box detector from its reviewed annotations (read from the Label Studio API),
evaluate it on the held-out tasks against the active version and the zero-shot pipeline, choose each label's
source (`backend.training.sources`), and save it as one checkpoint (`backend.models.detector_io`)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from backend.core.cancel import NEVER, StopFlag
from backend.core.detections import Detections
from backend.core.errors import NotEnoughData
from backend.core.params import TrainParams
from backend.training.dataset import LabeledImage, evaluation_split
from backend.models.detector import build_detector
from backend.models.detector_io import CHECKPOINT, load_detector, predict, save_detector
from backend.training.detector import TrainConfig, train_detector
from backend.training.metrics import detection_ap
from backend.training.recipe import fitted_spec, time_budget
from backend.registry.versions import DETECTOR_SOURCE
from backend.training.sources import choose_sources, served_score
from backend.training.warm_start import warm_start

log = logging.getLogger(__name__)
MIN_EXAMPLES = 2


def _nan_none(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value), 4)


@dataclass
class ZeroShot:
    """The zero-shot pipeline a detector version competes with, label by label: `detect(images)` gives one
    `Detections` per uint8 (H, W, 3) image with label values; `covers`: the labels it can predict at all."""

    model_version: str
    covers: set[str]
    detect: Callable[[list[np.ndarray]], list[Detections]]
    cache: dict = field(default_factory=dict)  # image key → Detections, for the held-out images seen before


def _score(model, images: list[np.ndarray], truths: list[dict], class_names: list[str],
           model_classes: list[str], device: str) -> dict:
    """AP of `model` (whose class i+1 is model_classes[i]) against truths labelled in `class_names` order."""
    predictions = predict(model, images, device)
    remap = np.array([0] + [class_names.index(c) + 1 if c in class_names else -1 for c in model_classes])
    for p in predictions:
        p["labels"] = remap[p["labels"]]
    return detection_ap(predictions, truths, classes=list(range(1, len(class_names) + 1)))


def _score_zero_shot(zero_shot: ZeroShot | None, images: list[np.ndarray], truths: list[dict],
                     class_names: list[str]) -> dict:
    """AP of the zero-shot pipeline on the evaluation images (nothing run when it covers none of the labels; its
    results cached per image)."""
    classes = list(range(1, len(class_names) + 1))
    if zero_shot is None or not zero_shot.covers & set(class_names):
        empty = {"boxes": np.zeros((0, 4), np.float32), "scores": np.zeros(0, np.float32),
                 "labels": np.zeros(0, np.int64)}
        return detection_ap([empty] * len(images), truths, classes)
    keys = [f"{zero_shot.model_version}:{image.shape}:{hashlib.sha1(image.tobytes()).hexdigest()}" for image in images]
    todo = [i for i, key in enumerate(keys) if key not in zero_shot.cache]
    if todo:
        for i, dets in zip(todo, zero_shot.detect([images[i] for i in todo])):
            zero_shot.cache[keys[i]] = dets
    predictions = []
    for key in keys:
        dets = zero_shot.cache[key]
        keep = [i for i, label in enumerate(dets.labels) if label in class_names]
        predictions.append({"boxes": dets.xyxy[keep], "scores": dets.scores[keep],
                            "labels": np.array([class_names.index(dets.labels[i]) + 1 for i in keep], np.int64)})
    return detection_ap(predictions, truths, classes)


def _by_label(scores: dict, class_names: list[str], key: str) -> dict[str, float]:
    """{label: AP} (NaN: no box of it among the truths) from `detection_ap`'s per-class results."""
    return {class_names[c - 1]: float(v[key]) for c, v in scores["per_class"].items()}


def _baseline_metrics(baseline: Path) -> dict:
    try:
        return json.loads((Path(baseline) / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}


def train_project_detector(examples: list[LabeledImage], project_id: int, params: TrainParams, out_dir: Path,
                           device: str, baseline: Path | None = None, stop: StopFlag = NEVER,
                           zero_shot: ZeroShot | None = None) -> dict:
    """Labelled images (`image_examples`, `video_examples`) → train (from the `baseline` version's weights when
    `params.warm_start`) → AP on the evaluation tasks, with the `baseline` checkpoint's and the `zero_shot`
    pipeline's AP on the very same tasks → each label's source and the AP50 served (`served_ap50`) by this version
    and by what serves now (`baseline_served_ap50`) → save. Returns the metrics (also stored in the checkpoint)."""
    started = time.perf_counter()
    class_names = sorted({label for e in examples for label in e.labels})
    if len(examples) < MIN_EXAMPLES or not class_names:
        raise NotEnoughData(f"project {project_id} needs at least {MIN_EXAMPLES} annotated images (or video frames) "
                            f"with boxes, rectangles, brush or polygon regions; found {len(examples)} and labels "
                            f"{class_names}")
    images = [e.image for e in examples]
    truths = [{"boxes": e.boxes, "labels": np.array([class_names.index(label) + 1 for label in e.labels], np.int64)}
              for e in examples]
    train, evaluation, evaluated_on = evaluation_split([e.task_id for e in examples])
    has_baseline = baseline is not None and (Path(baseline) / CHECKPOINT).is_file()
    old = load_detector(baseline, "cpu") if has_baseline and params.warm_start else None
    spec = fitted_spec([images[i] for i in train], [truths[i]["boxes"] for i in train], len(class_names), params,
                       old[0].spec if old else None)
    model = build_detector(spec)
    warm = warm_start(model, old[0].state_dict(), old[1], class_names) if old else None
    config = TrainConfig(epochs=params.epochs, time_budget_s=time_budget(len(train), params),
                         dihedral=params.augment == "dihedral")
    if warm is not None:
        log.info("project %s: warm start from %s (labels kept: %s)", project_id, baseline, warm["classes_kept"])
    del old
    n_boxes = int(sum(len(truths[i]["boxes"]) for i in train))
    log.info("project %s: training a detector for %s on %d images (%d boxes), %s on %s", project_id, class_names,
             len(train), n_boxes, asdict(config), device)
    stats = train_detector(model, [(images[i], truths[i]["boxes"], truths[i]["labels"]) for i in train], device,
                           config, progress=lambda e, n, loss: log.info("project %s detector: epoch %d/%d loss %.3f",
                                                                        project_id, e, n, loss), stop=stop)
    stop.check()
    eval_images, eval_truths = [images[i] for i in evaluation], [truths[i] for i in evaluation]
    scores = _score(model, eval_images, eval_truths, class_names, class_names, device)
    metrics = {"ap50": round(scores["ap50"], 4), "ap": round(scores["ap"], 4),
               "per_class": {class_names[c - 1]: {k: None if np.isnan(x) else x for k, x in v.items()}
                             for c, v in scores["per_class"].items()},
               "evaluated_on": evaluated_on, "n_train_images": len(train), "n_train_boxes": n_boxes,
               "n_eval_images": len(evaluation), "n_eval_boxes": int(sum(len(t["boxes"]) for t in eval_truths)),
               "classes": class_names, "epochs": stats["epochs"], "final_loss": stats["final_loss"],
               "train_s": round(time.perf_counter() - started, 2), "device": device,
               "warm_start": warm is not None, "time_budget_s": config.time_budget_s, "spec": spec.as_dict()}
    zero = _score_zero_shot(zero_shot, eval_images, eval_truths, class_names)
    zero_ap50, zero_ap = _by_label(zero, class_names, "ap50"), _by_label(zero, class_names, "ap")
    covers = zero_shot.covers if zero_shot is not None else set()
    old_metrics = _baseline_metrics(baseline) if has_baseline else {}
    sources = choose_sources(_by_label(scores, class_names, "ap50"), zero_ap50, covers, old_metrics.get("sources"))
    metrics |= {"zero_shot": {"model_version": zero_shot.model_version if zero_shot else None,
                              "covers": sorted(covers & set(class_names)),
                              "per_class": {label: {"ap50": _nan_none(zero_ap50[label]), "ap": _nan_none(zero_ap[label])}
                                            for label in class_names}},
                "sources": sources,
                "served_ap50": served_score(sources, _by_label(scores, class_names, "ap50"), zero_ap50, class_names),
                "served_ap": served_score(sources, _by_label(scores, class_names, "ap"), zero_ap, class_names)}
    old_sources: dict = {}
    old_ap50: dict = {}
    old_ap: dict = {}
    if has_baseline:
        stop.check()
        old, old_classes = load_detector(baseline, device)
        base = _score(old, eval_images, eval_truths, class_names, old_classes, device)
        metrics |= {"baseline_ap50": round(base["ap50"], 4), "baseline_ap": round(base["ap"], 4)}
        old_ap50, old_ap = _by_label(base, class_names, "ap50"), _by_label(base, class_names, "ap")
        old_sources = {label: old_metrics.get("sources", {}).get(label, DETECTOR_SOURCE)
                       for label in class_names if label in old_classes}
    metrics |= {"baseline_served_ap50": served_score(old_sources, old_ap50, zero_ap50, class_names),
                "baseline_served_ap": served_score(old_sources, old_ap, zero_ap, class_names)}
    save_detector(out_dir, model, class_names, metrics)
    log.info("project %s detector saved to %s: %s", project_id, out_dir, metrics)
    return metrics
