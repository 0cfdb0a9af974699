"""A new detector version against what serves now, on the very same held-out images and as each would serve: its
own detector at the per-label score cut that costs annotators least, the active version with its cuts, and the
zero-shot pipeline (the project's score cut and region cap); compared by the annotation time their pre-labels would
take to correct (`backend.core.effort`), and the per-label sources that follow (`backend.training.sources`).

Images are uint8 (H, W, 3); predictions {"boxes" float32 (N, 4) xyxy pixels, "scores" (N,), "labels" int64 (N,) in
1..C of the project's class list}; truths {"boxes", "labels"} the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np

from backend.core.detections import Detections
from backend.core.effort import FAST, CostModel, actions, manual_seconds, seconds
from backend.core.errors import ModelUnavailable
from backend.models.detector_io import predict
from backend.registry.versions import DETECTOR_SOURCE
from backend.training.metrics import detection_ap
from backend.training.sources import choose_sources, served_score

log = logging.getLogger(__name__)
ZERO_SHOT_CHUNK = 8  # images per zero-shot call: background work holds the device one chunk at a time
NOTHING_SHOWN = 1.01  # a score cut above every score: the label's regions are not shown
THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.05, 1.0, 0.05), 2)) + (NOTHING_SHOWN,)
_EMPTY = {"boxes": np.zeros((0, 4), np.float32), "scores": np.zeros(0, np.float32), "labels": np.zeros(0, np.int64)}


@dataclass
class ZeroShot:
    """The zero-shot pipeline a detector version competes with, label by label: `detect(images)` gives one
    `Detections` per image with label values (the service's `detect` answers images it has seen with these labels
    and parameters from its `RegionMemory`, `backend.pipelines.selection`); `covers`: the labels it can predict at
    all."""

    model_version: str
    covers: set[str]
    detect: Callable[[list[np.ndarray]], list[Detections]]


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
    """The zero-shot pipeline's regions of the project's classes on `images`, asked in chunks of `ZERO_SHOT_CHUNK`.
    Raises `ModelUnavailable` when its weights do not load."""
    found = []
    for start in range(0, len(images), ZERO_SHOT_CHUNK):
        found.extend(zero_shot.detect(images[start:start + ZERO_SHOT_CHUNK]))
    out = []
    for dets in found:
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


def label_seconds(predictions: list[dict], truths: list[dict], cls: int, threshold: float = 0.0,
                  model: CostModel = FAST) -> float:
    """Annotator seconds to correct class `cls`'s regions scoring >= `threshold` into its true boxes, over the images
    (`backend.core.effort`: verify, adjust, delete, draw)."""
    total = 0.0
    for p, t in zip(predictions, truths):
        shown = p["boxes"][(p["labels"] == cls) & (p["scores"] >= threshold)]
        true = t["boxes"][t["labels"] == cls]
        total += seconds(actions(shown, ["x"] * len(shown), true, ["x"] * len(true)), model)
    return total


def cut_costs(predictions: list[dict], truths: list[dict], cls: int, model: CostModel = FAST) -> np.ndarray:
    """float (images, len(THRESHOLDS)): annotator seconds (`model`) to correct class `cls` on each image at each
    cut."""
    return np.array([[label_seconds([p], [t], cls, threshold, model) for threshold in THRESHOLDS]
                     for p, t in zip(predictions, truths)], float).reshape(len(truths), len(THRESHOLDS))


def _cheapest(total: np.ndarray) -> int:
    """Index of the cut in `THRESHOLDS` with the fewest seconds in `total` (len(THRESHOLDS),); a tie (to a
    microsecond: sums and differences of per-image seconds carry floating-point noise) takes the higher cut: fewer
    regions to look at."""
    total = np.round(np.asarray(total, float), 6)
    return int(len(total) - 1 - np.argmin(total[::-1]))


def fitted_cut(costs: np.ndarray) -> float:
    """The score cut in `THRESHOLDS` that costs the annotators least over these images (`cut_costs`; a tie takes the
    higher cut; `NOTHING_SHOWN` when showing nothing is cheapest): the cut a version serves with."""
    return THRESHOLDS[_cheapest(np.asarray(costs, float).sum(axis=0))]


def cross_fitted_seconds(costs: np.ndarray) -> float:
    """What serving at a fitted cut costs on images the cut was not fitted on: the sum over images of each image's
    seconds at the cut fitted on the other images (leave one out). Picking the cheapest of 20 cuts on the very
    images it is then scored on flatters a detector, most on the few held-out tasks of a young project; this
    does not. `costs`: `cut_costs` (images, cuts); one image: its own cheapest cut (nothing to leave out)."""
    costs = np.asarray(costs, float)
    if len(costs) < 2:
        return float(costs.sum(axis=0).min()) if len(costs) else 0.0
    total = costs.sum(axis=0)
    return float(sum(row[_cheapest(total - row)] for row in costs))


def compare(mine: list[dict], truths: list[dict], class_names: list[str], cut: ServedCut, held_out: bool,
            images: list[np.ndarray], zero_shot: ZeroShot | None = None, old: list[dict] | None = None,
            old_classes: tuple[str, ...] = (), old_metrics: dict | None = None, model: CostModel = FAST) -> dict:
    """The metrics of the comparison, by annotation time (`backend.core.effort`, the project's cost `model`:
    fast drawing by default) on the held-out tasks, with AP50 beside it:

    - `thresholds`: per label the detector's score cut that costs least (fitted on these tasks);
    - `effort`: per label the seconds to correct the detector's regions at a fitted cut, each task at the cut
      fitted on the others (`cross_fitted_seconds`), the zero-shot pipeline's as it
      serves (the project's score cut and region cap), and to draw everything; `served_s`: the total for the
      sources chosen; `baseline_served_s`: for what serves now (the active version `old` with its sources and cuts,
      labels it does not know from the zero-shot pipeline; the zero-shot pipeline alone when nothing is active);
    - `sources`: per label the cheaper of detector and zero-shot (`backend.training.sources`);
    - `served_per_class`, `zero_shot`, `served_ap50`, `baseline_served_ap50`: the same comparison by AP50."""
    classes = list(range(1, len(class_names) + 1))
    old_metrics = old_metrics or {}
    score = lambda predictions: detection_ap([cut.apply(p) for p in predictions], truths, classes)  # noqa: E731
    new = score(mine)
    zero_info: dict = {"model_version": zero_shot.model_version if zero_shot else None}
    covers: set[str] = set()
    zero_predictions = [_EMPTY] * len(truths)
    if zero_shot is not None and zero_shot.covers & set(class_names):
        try:
            zero_predictions = [cut.apply(p) for p in zero_shot_predictions(zero_shot, images, class_names)]
            covers = zero_shot.covers & set(class_names)
        except ModelUnavailable as exc:  # it cannot serve now either: the detector keeps every label it knows
            log.warning("zero-shot pipeline %s not compared: %s", zero_shot.model_version, exc)
            zero_info["error"] = str(exc)
    zero = detection_ap(zero_predictions, truths, classes)
    n_true = {label: int(sum((t["labels"] == c).sum() for t in truths)) for c, label in zip(classes, class_names)}
    costs = {label: cut_costs(mine, truths, c, model) for c, label in zip(classes, class_names)}
    cuts = {label: fitted_cut(costs[label]) for label in class_names}
    effort = {label: {"detector_s": round(cross_fitted_seconds(costs[label]), 1),
                      "zero_shot_s": round(label_seconds(zero_predictions, truths, c, model=model), 1),
                      "manual_s": round(manual_seconds(n_true[label], model), 1)}
              for c, label in zip(classes, class_names)}
    # lower seconds is better: the source rule sees negated seconds, NaN where the label has no held-out box
    evidence = lambda key: {label: -effort[label][key] if n_true[label] else float("nan")  # noqa: E731
                            for label in class_names}
    sources = choose_sources(evidence("detector_s"), evidence("zero_shot_s"), covers, old_metrics.get("sources"),
                             held_out)
    served_s = sum(effort[l]["detector_s"] if sources[l] == DETECTOR_SOURCE else effort[l]["zero_shot_s"]
                   for l in class_names)
    mine50, mine_ap = _by_label(new, class_names, "ap50"), _by_label(new, class_names, "ap")
    zero50, zero_ap = _by_label(zero, class_names, "ap50"), _by_label(zero, class_names, "ap")
    out = {"zero_shot": {**zero_info, "covers": sorted(covers),
                         "per_class": {label: {"ap50": _rounded(zero50[label]), "ap": _rounded(zero_ap[label])}
                                       for label in class_names}},
           "served_per_class": {label: {"ap50": _rounded(mine50[label]), "ap": _rounded(mine_ap[label])}
                                for label in class_names},
           "sources": sources, "evaluated_held_out": held_out,
           "thresholds": cuts,
           "effort": {"model": model.name, "draw_s": model.draw, "per_class": effort, "served_s": round(served_s, 1),
                      "manual_s": round(sum(e["manual_s"] for e in effort.values()), 1)},
           "served_ap50": served_score(sources, mine50, zero50, class_names),
           "served_ap": served_score(sources, mine_ap, zero_ap, class_names)}
    old_sources, old50, old_ap, old_s = {}, {}, {}, {}
    if old is not None:
        base = score(old)
        old50, old_ap = _by_label(base, class_names, "ap50"), _by_label(base, class_names, "ap")
        old_sources = {label: (old_metrics.get("sources") or {}).get(label, DETECTOR_SOURCE)
                       for label in class_names if label in old_classes}
        old_cuts = old_metrics.get("thresholds") or {}
        old_s = {label: label_seconds(old, truths, c, old_cuts.get(label, cut.threshold), model)
                 for c, label in zip(classes, class_names)}
    baseline_s = sum(old_s[l] if old_sources.get(l) == DETECTOR_SOURCE else effort[l]["zero_shot_s"]
                     for l in class_names)
    out["effort"]["baseline_served_s"] = round(baseline_s, 1)
    return out | {"baseline_served_ap50": served_score(old_sources, old50, zero50, class_names),
                  "baseline_served_ap": served_score(old_sources, old_ap, zero_ap, class_names)}
