"""A new detector version against what serves now, on the very same held-out images and as each would serve
(the project's score cut and region cap applied to every side alike): its own detector, the active version, and the
zero-shot pipeline; and the per-label sources that follow (`backend.training.sources`).

Images are uint8 (H, W, 3); predictions {"boxes" float32 (N, 4) xyxy pixels, "scores" (N,), "labels" int64 (N,) in
1..C of the project's class list}; truths {"boxes", "labels"} the same way.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from backend.core.detections import Detections
from backend.core.errors import ModelUnavailable
from backend.models.detector_io import predict
from backend.registry.versions import DETECTOR_SOURCE
from backend.training.metrics import detection_ap
from backend.training.sources import choose_sources, served_score

log = logging.getLogger(__name__)
CHUNK = 8  # images per zero-shot call: background work holds the device one chunk at a time


@dataclass
class ZeroShot:
    """The zero-shot pipeline a detector version competes with, label by label: `detect(images)` gives one
    `Detections` per image with label values; `covers`: the labels it can predict at all; `key`: what else its
    results depend on (labels, prompts, thresholds), part of the cache key; `cache` is shared between trainings."""

    model_version: str
    covers: set[str]
    detect: Callable[[list[np.ndarray]], list[Detections]]
    key: str = ""
    cache: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class ServedCut:
    """How the project serves regions: score at least `threshold`, at most `max_regions` per image."""

    threshold: float = 0.0
    max_regions: int = 1_000_000

    def apply(self, prediction: dict) -> dict:
        keep = np.flatnonzero(prediction["scores"] >= self.threshold)
        keep = keep[np.argsort(-prediction["scores"][keep], kind="stable")][:self.max_regions]
        return {k: v[keep] for k, v in prediction.items()}


def model_predictions(model, images: list[np.ndarray], class_names: list[str], model_classes: list[str],
                      device: str) -> list[dict]:
    """`model`'s predictions (its class i+1 is model_classes[i]) with labels renumbered to `class_names` (-1: a class
    the project no longer has)."""
    predictions = predict(model, images, device)
    remap = np.array([0] + [class_names.index(c) + 1 if c in class_names else -1 for c in model_classes])
    for p in predictions:
        p["labels"] = remap[p["labels"]]
    return predictions


def zero_shot_predictions(zero_shot: ZeroShot, images: list[np.ndarray], class_names: list[str]) -> list[dict]:
    """The zero-shot pipeline's regions of the project's classes on `images`, run in chunks of `CHUNK` for the
    images it has not seen with these labels and parameters (results kept in `zero_shot.cache`, without masks).
    Raises `ModelUnavailable` when its weights do not load."""
    keys = [f"{zero_shot.model_version}|{zero_shot.key}|{image.shape}|{hashlib.sha1(image.tobytes()).hexdigest()}"
            for image in images]
    with zero_shot.lock:
        found = {i: zero_shot.cache[key] for i, key in enumerate(keys) if key in zero_shot.cache}
    todo = [i for i in range(len(images)) if i not in found]
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start:start + CHUNK]
        for i, dets in zip(chunk, zero_shot.detect([images[j] for j in chunk])):
            found[i] = Detections(dets.xyxy, dets.scores, dets.labels, dets.image_size)
            with zero_shot.lock:
                zero_shot.cache[keys[i]] = found[i]
    out = []
    for i in range(len(images)):
        dets = found[i]
        keep = [j for j, label in enumerate(dets.labels) if label in class_names]
        out.append({"boxes": np.asarray(dets.xyxy, np.float32).reshape(-1, 4)[keep],
                    "scores": np.asarray(dets.scores, np.float32)[keep],
                    "labels": np.array([class_names.index(dets.labels[j]) + 1 for j in keep], np.int64)})
    return out


def _by_label(scores: dict, class_names: list[str], key: str) -> dict[str, float]:
    """{label: AP} (NaN: no box of it among the truths) from `detection_ap`'s per-class results."""
    return {class_names[c - 1]: float(v[key]) for c, v in scores["per_class"].items()}


def _rounded(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value), 4)


def compare(mine: list[dict], truths: list[dict], class_names: list[str], cut: ServedCut, held_out: bool,
            images: list[np.ndarray], zero_shot: ZeroShot | None = None, old: list[dict] | None = None,
            old_classes: tuple[str, ...] = (), old_metrics: dict | None = None) -> dict:
    """The metrics of the comparison: per label the served AP50 of the new detector (`served_per_class`), of the
    zero-shot pipeline (`zero_shot`), the sources chosen, the mean AP50 / AP the version would serve with them
    (`served_ap50`, `served_ap`) and what serves now (`baseline_served_*`: the active version `old` with its sources,
    labels it does not know from the zero-shot pipeline; the zero-shot pipeline alone when nothing is active)."""
    classes = list(range(1, len(class_names) + 1))
    old_metrics = old_metrics or {}
    score = lambda predictions: detection_ap([cut.apply(p) for p in predictions], truths, classes)  # noqa: E731
    new = score(mine)
    zero_info: dict = {"model_version": zero_shot.model_version if zero_shot else None}
    covers: set[str] = set()
    zero = {"per_class": {c: {"ap50": float("nan"), "ap": float("nan")} for c in classes}}
    if zero_shot is not None and zero_shot.covers & set(class_names):
        try:
            zero = score(zero_shot_predictions(zero_shot, images, class_names))
            covers = zero_shot.covers & set(class_names)
        except ModelUnavailable as exc:  # it cannot serve now either: the detector keeps every label it knows
            log.warning("zero-shot pipeline %s not compared: %s", zero_shot.model_version, exc)
            zero_info["error"] = str(exc)
    if not covers:  # nothing it can predict: it scores 0 wherever there is a box
        zero = detection_ap([{"boxes": np.zeros((0, 4), np.float32), "scores": np.zeros(0, np.float32),
                              "labels": np.zeros(0, np.int64)}] * len(truths), truths, classes)
    mine50, mine_ap = _by_label(new, class_names, "ap50"), _by_label(new, class_names, "ap")
    zero50, zero_ap = _by_label(zero, class_names, "ap50"), _by_label(zero, class_names, "ap")
    sources = choose_sources(mine50, zero50, covers, old_metrics.get("sources"), held_out)
    out = {"zero_shot": {**zero_info, "covers": sorted(covers),
                         "per_class": {label: {"ap50": _rounded(zero50[label]), "ap": _rounded(zero_ap[label])}
                                       for label in class_names}},
           "served_per_class": {label: {"ap50": _rounded(mine50[label]), "ap": _rounded(mine_ap[label])}
                                for label in class_names},
           "sources": sources, "evaluated_held_out": held_out,
           "served_ap50": served_score(sources, mine50, zero50, class_names),
           "served_ap": served_score(sources, mine_ap, zero_ap, class_names)}
    old_sources, old50, old_ap = {}, {}, {}
    if old is not None:
        base = score(old)
        old50, old_ap = _by_label(base, class_names, "ap50"), _by_label(base, class_names, "ap")
        old_sources = {label: (old_metrics.get("sources") or {}).get(label, DETECTOR_SOURCE)
                       for label in class_names if label in old_classes}
    return out | {"baseline_served_ap50": served_score(old_sources, old50, zero50, class_names),
                  "baseline_served_ap": served_score(old_sources, old_ap, zero_ap, class_names)}
