"""Train a project's specialised box detector from its reviewed annotations (read from the Label Studio API),
evaluate it on the held-out tasks against the active version and the zero-shot pipeline, choose each label's
source (`backend.training.comparison`), and save it as one checkpoint (`backend.models.detector_io`)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np

from backend.core.cancel import NEVER, StopFlag
from backend.core.effort import drawing_model
from backend.core.errors import Cancelled, NotEnoughData
from backend.core.params import TrainParams
from backend.models.detector import build_detector
from backend.models.detector_io import CHECKPOINT, load_detector, save_detector
from backend.training.comparison import ServedCut, ZeroShot, compare, model_predictions
from backend.training.dataset import LabeledImage, evaluation_split
from backend.training.detector import TrainConfig, train_detector
from backend.training.metrics import detection_ap
from backend.training.recipe import (FINE_TUNE_FROM, FINE_TUNE_LR, cached_variants, fitted_spec, time_budget,
                                     training_phases)
from backend.training.warm_start import warm_start

log = logging.getLogger(__name__)
MIN_EXAMPLES = 2


FRESH_MAX = 16  # images annotated while a version trained that its evaluation takes in, at most (each costs a
# zero-shot prediction where the zero-shot pipeline did not serve it: LIME on a CPU, seconds)


def with_fresh(evaluation: list[int], evaluated_on: str, fresh: list[LabeledImage], class_names: list[str],
               limit: int = FRESH_MAX) -> tuple[list[int], str, list[LabeledImage]]:
    """(evaluation indices, "held-out" or "training", fresh images evaluated besides them): the images annotated
    while the version trained are held out from it by construction, and from the active version trained before
    them, so the comparison takes in up to `limit` of them (those with a known label's box or no box at all, newest
    tasks first). A young project's held-out split holds 3-4 tasks: a score cut and an activation fitted on so few
    rest on chance. A version that was evaluated on its own training tasks (too few for a split) is evaluated on
    the fresh ones alone when there are."""
    known = set(class_names)
    usable = [e for e in fresh if not e.labels or known & set(e.labels)]
    usable = sorted(usable, key=lambda e: e.task_id, reverse=True)[:limit]
    if not usable:
        return evaluation, evaluated_on, []
    if evaluated_on == "training":
        return [], "held-out", usable
    return evaluation, evaluated_on, usable


def _fresh(fresh: Callable[[set[int]], list[LabeledImage]] | None, examples: list[LabeledImage]) -> list[LabeledImage]:
    if fresh is None:
        return []
    try:
        return fresh({e.task_id for e in examples})
    except Cancelled:
        raise
    except Exception as exc:  # noqa: BLE001 - more evidence when it can be read; the held-out tasks otherwise
        log.warning("images annotated during training not evaluated: %s", exc)
        return []


def _truth(example: LabeledImage, class_names: list[str]) -> dict:
    """{"boxes" float32 (N, 4), "labels" int64 (N,) in 1..C} of an image, boxes of labels not in `class_names` (a
    fresh image's labels the version was not trained on) left out."""
    keep = [i for i, label in enumerate(example.labels) if label in class_names]
    return {"boxes": np.asarray(example.boxes, np.float32).reshape(-1, 4)[keep],
            "labels": np.array([class_names.index(example.labels[i]) + 1 for i in keep], np.int64)}


def _baseline_metrics(baseline: Path) -> dict:
    try:
        return json.loads((Path(baseline) / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}


def train_project_detector(examples: list[LabeledImage], project_id: int, params: TrainParams, out_dir: Path,
                           device: str, baseline: Path | None = None, stop: StopFlag = NEVER,
                           zero_shot: ZeroShot | None = None, cut: ServedCut | None = None,
                           pause: Callable[[], float] | None = None,
                           fresh: Callable[[set[int]], list[LabeledImage]] | None = None) -> dict:
    """Labelled images (`image_examples`, `video_examples`) → train (from the `baseline` version's weights when
    `params.warm_start`) → AP on the evaluation tasks, with the `baseline` checkpoint's and the `zero_shot`
    pipeline's AP on the very same tasks, all as served (`cut`: the project's score cut and region cap) → each
    label's source and the AP50 served (`served_ap50`) by this version and by what serves now
    (`baseline_served_ap50`) (`backend.training.comparison`) → save. Returns the metrics (also stored in the
    checkpoint). `fresh(task ids trained or held out)`: images annotated since `examples` were read (while this
    version trained), added to the evaluation tasks (`with_fresh`)."""
    started = time.perf_counter()
    class_names = sorted({label for e in examples for label in e.labels})
    if len(examples) < MIN_EXAMPLES or not class_names:
        raise NotEnoughData(f"project {project_id} needs at least {MIN_EXAMPLES} annotated images (or video frames) "
                            f"with boxes, rectangles, brush or polygon regions; found {len(examples)} and labels "
                            f"{class_names}")
    images = [e.image for e in examples]
    truths = [_truth(e, class_names) for e in examples]
    train, evaluation, evaluated_on = evaluation_split([e.task_id for e in examples])
    has_baseline = baseline is not None and (Path(baseline) / CHECKPOINT).is_file()
    old = load_detector(baseline, "cpu") if has_baseline and params.warm_start else None
    spec = fitted_spec([images[i] for i in train], [truths[i]["boxes"] for i in train], len(class_names), params,
                       old[0].spec if old else None)
    model = build_detector(spec)
    levels_differ = old is not None and old[0].spec.stride4 != spec.stride4  # a version from before the stride-8 FPN
    warm = warm_start(model, old[0].state_dict(), old[1], class_names,
                      ("backbone.fpn", "rpn") if levels_differ else ()) if old else None
    budget = time_budget(len(train), params)
    head_s, fine_tune_s = training_phases(len(train), budget, params.epochs)
    config = TrainConfig(epochs=params.epochs, time_budget_s=head_s + fine_tune_s,
                         dihedral=params.augment == "dihedral",
                         cached_variants=cached_variants(len(train), head_s, params.epochs),
                         fine_tune_s=fine_tune_s, fine_tune_from=FINE_TUNE_FROM, fine_tune_lr=FINE_TUNE_LR)
    if warm is not None:
        log.info("project %s: warm start from %s (labels kept: %s)", project_id, baseline, warm["classes_kept"])
    del old
    n_boxes = int(sum(len(truths[i]["boxes"]) for i in train))
    log.info("project %s: training a detector for %s on %d images (%d boxes), %s on %s", project_id, class_names,
             len(train), n_boxes, asdict(config), device)
    stats = train_detector(model, [(images[i], truths[i]["boxes"], truths[i]["labels"]) for i in train], device,
                           config, progress=lambda e, n, loss: log.info("project %s detector: epoch %d/%d loss %.3f",
                                                                        project_id, e, n, loss), stop=stop,
                           pause=pause)
    stop.check()
    evaluation, evaluated_on, extra = with_fresh(evaluation, evaluated_on, _fresh(fresh, examples), class_names)
    eval_images = [images[i] for i in evaluation] + [e.image for e in extra]
    eval_truths = [truths[i] for i in evaluation] + [_truth(e, class_names) for e in extra]
    mine = model_predictions(model, eval_images, class_names, class_names, device)
    scores = detection_ap(mine, eval_truths, list(range(1, len(class_names) + 1)))  # raw: every box it finds
    metrics = {"ap50": round(scores["ap50"], 4), "ap": round(scores["ap"], 4),
               "per_class": {class_names[c - 1]: {k: None if np.isnan(x) else x for k, x in v.items()}
                             for c, v in scores["per_class"].items()},
               "evaluated_on": evaluated_on, "n_train_images": len(train), "n_train_boxes": n_boxes,
               "n_eval_images": len(eval_images), "n_eval_boxes": int(sum(len(t["boxes"]) for t in eval_truths)),
               "n_fresh_eval_images": len(extra),
               "classes": class_names, "epochs": stats["epochs"], "final_loss": stats["final_loss"],
               "train_s": round(time.perf_counter() - started - stats["paused_s"], 2),
               "paused_s": stats["paused_s"], "device": device,
               "warm_start": warm is not None, "time_budget_s": config.time_budget_s, "spec": spec.as_dict(),
               **({"fine_tune": stats["fine_tune"]} if "fine_tune" in stats else {})}
    classes = list(range(1, len(class_names) + 1))
    old_predictions, old_classes = None, ()
    if has_baseline:  # the active version on the very same tasks
        stop.check()
        old_model, old_classes = load_detector(baseline, device)
        old_predictions = model_predictions(old_model, eval_images, class_names, old_classes, device)
        base = detection_ap(old_predictions, eval_truths, classes)
        metrics |= {"baseline_ap50": round(base["ap50"], 4), "baseline_ap": round(base["ap"], 4)}
    metrics |= compare(mine, eval_truths, class_names, cut or ServedCut(), evaluated_on == "held-out", eval_images,
                       zero_shot, old_predictions, tuple(old_classes),
                       _baseline_metrics(baseline) if has_baseline else {}, drawing_model(params.draw_seconds))
    save_detector(out_dir, model, class_names, metrics)
    log.info("project %s detector saved to %s: %s", project_id, out_dir, metrics)
    return metrics
