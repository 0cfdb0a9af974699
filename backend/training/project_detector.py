"""Train a project's specialised box detector from its reviewed annotations (read from the Label Studio API),
evaluate it on the held-out tasks against the active version, and save it as one checkpoint
(`backend.models.detector_io`)."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from backend.core.cancel import NEVER, StopFlag
from backend.core.errors import NotEnoughData
from backend.core.params import TrainParams
from backend.training.dataset import LabeledImage, evaluation_split
from backend.models.detector import DetectorSpec, build_detector
from backend.models.detector_io import CHECKPOINT, load_detector, predict, save_detector
from backend.training.detector import TrainConfig, train_detector
from backend.training.metrics import detection_ap

log = logging.getLogger(__name__)
MIN_EXAMPLES = 2


def _score(model, images: list[np.ndarray], truths: list[dict], class_names: list[str],
           model_classes: list[str], device: str) -> dict:
    """AP of `model` (whose class i+1 is model_classes[i]) against truths labelled in `class_names` order."""
    predictions = predict(model, images, device)
    remap = np.array([0] + [class_names.index(c) + 1 if c in class_names else -1 for c in model_classes])
    for p in predictions:
        p["labels"] = remap[p["labels"]]
    return detection_ap(predictions, truths, classes=list(range(1, len(class_names) + 1)))


def train_project_detector(examples: list[LabeledImage], project_id: int, params: TrainParams, out_dir: Path,
                           device: str, baseline: Path | None = None, stop: StopFlag = NEVER) -> dict:
    """Labelled images (`image_examples`, `video_examples`) → train → AP on the evaluation tasks (and the `baseline`
    checkpoint's AP on the very same tasks) → save. Returns the metrics (also stored in the checkpoint)."""
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
    spec = DetectorSpec(num_classes=len(class_names), min_size=params.image_size, max_size=2 * params.image_size,
                        train_sizes=(int(params.image_size * 0.75), int(params.image_size * 1.25)),
                        tta_views=params.tta_views)
    config = TrainConfig(epochs=params.epochs, time_budget_s=params.time_budget_s,
                         dihedral=params.augment == "dihedral")
    model = build_detector(spec)
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
               "train_s": round(time.perf_counter() - started, 2), "device": device}
    if baseline is not None and (Path(baseline) / CHECKPOINT).is_file():
        old, old_classes = load_detector(baseline, device)
        base = _score(old, eval_images, eval_truths, class_names, old_classes, device)
        metrics |= {"baseline_ap50": round(base["ap50"], 4), "baseline_ap": round(base["ap"], 4)}
    save_detector(out_dir, model, class_names, metrics)
    log.info("project %s detector saved to %s: %s", project_id, out_dir, metrics)
    return metrics
