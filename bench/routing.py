"""Routing benchmark: does the review-priority score send annotators to the tasks whose pre-labels need correcting,
inside one project (one domain)?

Per task: the score against the task's F1 at IoU 0.5 against ground truth, and its errors (false negatives + false
positives at IoU 0.5, same label). Two domains, each reported on its own (pooled figures as an extra):
  trees   DeepForest 200-px tiles (bench/retrain.py's tiles()), split in --folds folds; each fold is predicted by
          the project's detector (Faster R-CNN, EfficientNet-Lite0 FPN) trained on the other folds by the train
          jobs' recipe (`backend.training.recipe`) for --budget-s seconds: the detector the loop serves a project
          of ~70 annotated tiles after its first trainings. As served (`--served fused`, the default): on the
          image and on its mirror, each fusing --views dihedral views of its backbone maps (the views it trained
          on with `train_augment: "dihedral"`, as here; a project left at `flip` fuses 2,
          `backend.models.map_views`) at the recipe's scales for that many views (8: three, 300 proposals each;
          bf16: `backend.training.recipe.fused_scales`; `--views 2` trains and serves as a `flip` project); or
          (`--served single`, the benchmark before 2026-12-05) on --views dihedral views of the image, each its own
          pass, view 0 served. Every candidate down to FLOOR kept; the served
          regions are those >= --cut. Served fused, a task has two views (image, mirror): "all views agreement"
          is then the mirror's.
  photos  the LIME pipeline over ImageNet EfficientNet-Lite0 on real photos and composites of them
          (bench/routing_photos.py), one set per --seeds seed, on the image and its mirror, candidates down to
          `class_threshold` FLOOR, served >= the default `class_threshold`.
Score variants (backend.predictions.scoring): agreement errors (the default since 2026-12: expected corrections
from the image and mirror views), mirror agreement (the default before), mean region score (the old one),
agreement over all --views views, expected errors from the candidates under the cut, expected F1, and a learned
score: a ridge regression of log(1 + errors) on the task's scores, fitted on the project's "reviewed" tasks (the
other half of a random split: cross-fitted), and a learned region model: a logistic regression of "this shown
region is right" on the region's features, fitted on the reviewed tasks' regions, whose probabilities replace the
fused confidences in agreement errors (the service's `backend.predictions.region_model`, cross-fitted the same way),
and that model only where the service would choose it (`select_region_model` on the reviewed half: out of fold, it
must rank those tasks by F1 better than the default score; else the default score), novelty (1 - the largest cosine
similarity of the task's image embedding, the review page's embedder, to a reviewed task's: images unlike the
annotated ones first) alone and as one more input of the ridge regression; the count model
(`backend.predictions.count_model`: a ridge regression of the number of objects on the image embedding, fitted on
the reviewed half; the objects it expects beyond the shown regions are added to the expected corrections) always,
and where `select_count_model` on the reviewed half would choose it (against the default score, 0 where nothing
was found, as served); "as served before the rate mix": the region model where selected and the count model on top
of it where selected after it; and "as served": those, then the rate mix (`backend.predictions.rate_mix`: the
expected corrections weighed by their share of the task's units as well, k chosen on the reviewed half against the
truth's corrections there) where selected after them, as the service's calibration
refit chooses them (`backend.jobs.calibration`): what a project is served once it has reviewed that many tasks, the
headline variant (`*_before_review`: the default score, what it is served before 20 reviewed tasks). Every variant
is scored on --splits random halves of each domain's tasks (the other half being the "reviewed" tasks the learned
scores are fitted on); figures are means over the splits. Random order's expectation is the share of tasks reviewed.

Usage: python bench/routing.py [--folds 2] [--budget-s 300] [--views 8] [--served fused|single] [--composites 45]
       [--seeds 0 1 2 3] [--splits 20] [--cache DIR] [--device cpu|cuda]
Ends with one JSON line: per domain (under `domains`) spearman, errors_found_10, errors_found_30,
errors_found_30_random (with the score variant used, `variant`), every variant's figures, the ceilings no order
of these regions can beat (errors_found_10_ceiling, errors_found_30_ceiling: ranked by the true errors;
spearman_at_errors_ceiling: the best Spearman of a true F1 - errors / k order that keeps that 30 % share), on
how many halves the rate mix was chosen (rate_mix_chosen of rate_mix_halves);
min_domain_errors_found_30, min_domain_spearman, min_domain_errors_found_10, the detector, seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from backend.core.detections import Detections, box_iou, class_aware_nms  # noqa: E402
from backend.core.params import PredictParams  # noqa: E402
from backend.predictions import scoring  # noqa: E402
from backend.predictions.count_model import (CountModel, CountModelError, count_scores, misses,  # noqa: E402
                                             select_count_model)
from backend.predictions.rate_mix import rate_scores, select_rate_mix  # noqa: E402
from backend.predictions.region_model import RegionModel, RegionModelError, Reviewed, select_region_model  # noqa: E402
from backend.predictions.scoring import errors_found, mirror_image, unmirror  # noqa: E402

FRACTIONS = (0.1, 0.2, 0.3, 0.5)


# ---- per-task truth -------------------------------------------------------------------------------------------

def task_errors(pred: Detections, boxes: np.ndarray, labels: tuple[str, ...], iou: float = 0.5) -> tuple[float, int]:
    """(F1, false negatives + false positives) of one task's regions against ground truth at IoU >= `iou`: regions
    taken by descending score, each matched to the unmatched same-label truth box it overlaps most. F1 is 1 when
    both are empty."""
    overlaps = box_iou(pred.xyxy, boxes) if len(pred) and len(boxes) else np.zeros((len(pred), len(boxes)))
    free = np.ones(len(boxes), bool)
    tp = 0
    for i in np.argsort(-pred.scores, kind="stable"):
        candidates = np.where(free & (np.array(labels, dtype=object) == pred.labels[i]), overlaps[i], -1.0)
        j = int(np.argmax(candidates)) if len(boxes) else -1
        if j >= 0 and candidates[j] >= iou:
            free[j] = False
            tp += 1
    fp, fn = len(pred) - tp, len(boxes) - tp
    f1 = 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)
    return f1, fp + fn


def routing_figures(scores: np.ndarray, f1: np.ndarray, errors: np.ndarray) -> dict:
    """Spearman rho (score vs F1) and errors found at each of `FRACTIONS`."""
    rho = spearmanr(scores, f1).statistic if np.ptp(scores) > 0 and np.ptp(f1) > 0 else float("nan")
    out = {"spearman": round(float(rho), 3)}
    for fraction in FRACTIONS:
        out[f"errors_found_{int(fraction * 100)}"] = round(errors_found(scores, errors, fraction), 3)
    return out


# ---- score variants ---------------------------------------------------------------------------------------------

FLOOR = 0.05  # candidates kept down to this score: what expected errors reads under the cut


@dataclass
class Task:
    """One task: its views' candidates mapped back to the image (views[0] the image itself, views[1] its mirror),
    the served cut, the truth."""

    name: str
    views: list[Detections]
    cut: float
    boxes: np.ndarray
    labels: tuple[str, ...]
    embedding: np.ndarray | None = None  # float32 (1280,) unit row of the whole image (`ImageEmbedder`)

    def served(self, k: int = 0) -> Detections:
        dets = self.views[k]
        return dets.select(dets.scores >= self.cut)


def _features(task: Task) -> dict[str, float]:
    served, mirror = task.served(), task.served(1)
    return {"errors": scoring.errors_review_score([served, mirror]),
            "mirror": scoring.view_agreement([served, mirror]),
            "mean": scoring.confidence_score(served),
            "views": scoring.view_agreement([task.served(k) for k in range(len(task.views))]),
            "candidates": scoring.errors_score(scoring.expected_errors(task.views[0], task.cut)),
            "f1": scoring.expected_f1(task.views[0], task.cut)}


VARIANTS = {"agreement errors (default)": "errors", "mirror agreement (before)": "mirror",
            "mean (old score)": "mean", "all views agreement": "views", "expected errors, candidates": "candidates",
            "expected F1": "f1", "learned (cross-fitted)": None, "learned per region (cross-fitted)": "regions",
            "learned per region if selected": "selected", "novelty (distance to reviewed)": "novelty",
            "learned + novelty (cross-fitted)": "learned-novelty", "errors + count misses (cross-fitted)": "count",
            "errors + count misses if selected": "count-selected",
            "as served before the rate mix: region and count models if selected": "served",
            "as served: region and count models and the rate mix if selected": "mixed"}
EMBEDDED = ("novelty", "learned-novelty", "count", "count-selected", "served", "mixed")  # variants reading embeddings
MAIN, UNREVIEWED = "as served: region and count models and the rate mix if selected", "agreement errors (default)"
BEFORE, OLD = "mirror agreement (before)", "mean (old score)"
# Orders that read the truth: what no score can beat on these regions. "errors" ranks by the task's true errors (the
# most errors any order finds in its lowest 10 / 30 %); "F1 - errors / k" is the composite with the highest Spearman
# that still finds the errors ceiling's 30 % share within 1 point (k from JOINT_K): the joint goal's reachability.
ORACLE_ERRORS, ORACLE_JOINT = "oracle: true errors", "oracle: true F1 - errors / k"
JOINT_K = (2, 5, 10, 20, 40, 80)


def oracle_figures(f1: np.ndarray, errors: np.ndarray, halves: list[np.ndarray]) -> dict[str, dict]:
    """The two oracle orders' figures, means over the same random halves as the score variants (`halves`: the scored
    task indices of each); the joint one also names its k."""
    def mean(score) -> dict:
        figures = [routing_figures(score(f1[s], errors[s]), f1[s], errors[s]) for s in halves]
        return {k: round(float(np.nanmean([r[k] for r in figures])), 3) for k in figures[0]}

    ceiling = mean(lambda f, e: -e)
    joint = {"spearman": float("nan"), "k": None}
    for k in JOINT_K:
        row = mean(lambda f, e: f - e / k)
        if row["errors_found_30"] >= ceiling["errors_found_30"] - 0.01 and (
                joint["k"] is None or row["spearman"] > joint["spearman"]):
            joint = {**row, "k": k}
    return {ORACLE_ERRORS: ceiling, ORACLE_JOINT: joint}


def novelty(embeddings: np.ndarray, scored: np.ndarray, reviewed: np.ndarray) -> np.ndarray:
    """float (len(scored),): 1 - the largest cosine similarity of each scored task's image embedding to a reviewed
    task's (unit rows: a dot product); a reviewed task is not compared with itself (leave one out), so the same
    function gives the reviewed tasks' own novelty when `scored` is `reviewed`."""
    similarity = embeddings[scored] @ embeddings[reviewed].T
    similarity[scored[:, None] == reviewed[None, :]] = -1.0
    return 1.0 - similarity.max(axis=1)


def count_variants(embeddings: np.ndarray, counts: np.ndarray, expected: np.ndarray, shown: np.ndarray, f1: np.ndarray,
                   scored: np.ndarray, reviewed: np.ndarray, raw: np.ndarray) -> dict[str, dict[int, float]]:
    """The count model's scores of the scored tasks (`backend.predictions.count_model`, fitted on the reviewed ones):
    {"count": always, "count-selected": where `select_count_model` on the reviewed half chooses it against the
    default score `raw` (float (N,) of every task), else `raw`}."""
    default = dict(zip(scored, raw[scored]))
    try:
        model = CountModel.fit(embeddings[reviewed], counts[reviewed])
    except CountModelError:
        return {"count": default, "count-selected": default}
    fitted = dict(zip(scored, count_scores(expected[scored], model.predict(embeddings[scored]), shown[scored])))
    chosen, _, _ = select_count_model(embeddings[reviewed], counts[reviewed], expected[reviewed], shown[reviewed],
                                      f1[reviewed], default=raw[reviewed])
    return {"count": fitted, "count-selected": fitted if chosen is not None else default}


def served_variant(selected: "ProjectRegionModel", tasks: list, embeddings: np.ndarray, counts: np.ndarray,
                   shown: np.ndarray, f1: np.ndarray, errors_true: np.ndarray, scored: np.ndarray,
                   reviewed: np.ndarray, raw: np.ndarray) -> tuple[dict[int, float], dict[int, float], float | None]:
    """The scored tasks' scores as the service serves them after a calibration refit on the reviewed half
    (`backend.jobs.calibration`): the region model where selected, and the count model on top of its expected
    corrections (out of fold on the reviewed half, as the refit reads them) where selected after it, against the
    score served without it (the region model's out of fold, else the default score `raw`, float (N,)); then
    ({task: that score}, {task: the same with the rate mix where `select_rate_mix` chooses it on the reviewed half,
    against that score; `errors_true` float (N,): each task's false positives + false negatives}, the mix's k or
    None)."""
    def errors(task: Task) -> float:
        served, mirror = task.served(), task.served(1)
        if selected.model is None:
            return scoring.agreement_errors([served, mirror])
        return selected.model.expected_errors(served, mirror)

    units = np.array([scoring.agreement_units([t.served(), t.served(1)]) for t in tasks], np.float64)
    if selected.model is not None:
        before = np.array([1.0 / s - 1.0 if s > 0 else 0.0 for s in selected.learned])
        served = selected.learned
    else:
        before = np.array([errors(tasks[i]) for i in reviewed])
        served = raw[reviewed]
    chosen, counted, _ = select_count_model(embeddings[reviewed], counts[reviewed], before, shown[reviewed],
                                            f1[reviewed], default=served)
    after = np.array([errors(tasks[i]) for i in scored])
    if chosen is None:
        plain = {i: selected(tasks[i]) for i in scored}
        missed_reviewed, missed_scored = np.zeros(len(reviewed)), np.zeros(len(scored))
    else:
        missed_scored = misses(chosen.predict(embeddings[scored]), shown[scored])
        plain = dict(zip(scored, count_scores(after, chosen.predict(embeddings[scored]), shown[scored])))
        missed_reviewed = np.maximum(1.0 / counted - 1.0 - before, 0.0)
        served = counted
    k, _, _ = select_rate_mix(before + missed_reviewed, units[reviewed] + missed_reviewed, f1[reviewed],
                              errors_true[reviewed], served)
    if k is None:
        return plain, plain, None
    return plain, dict(zip(scored, rate_scores(after + missed_scored, units[scored] + missed_scored, k))), k


def embed_tasks(tasks: list, images: list[np.ndarray], device: str) -> None:
    """Sets each task's `embedding` (the review page's image embedder, `backend.adapters.embedder`)."""
    from backend.adapters.embedder import ImageEmbedder

    for task, row in zip(tasks, ImageEmbedder(device).embed(images)):
        task.embedding = row


class LearnedScore:
    """A project's own model, as it could be fitted on its reviewed tasks: ridge regression (scikit-learn) of
    log(1 + errors) on the standardised `_features`; the score is minus the prediction (more errors: lower)."""

    def __init__(self, features: list[dict], errors: np.ndarray):
        from sklearn.linear_model import Ridge

        self.names = sorted(features[0])
        x = np.array([[f[n] for n in self.names] for f in features])
        self.mean, self.scale = x.mean(axis=0), np.where(x.std(axis=0) > 1e-9, x.std(axis=0), 1.0)
        self.model = Ridge(alpha=1.0).fit((x - self.mean) / self.scale, np.log1p(errors))

    def __call__(self, features: dict) -> float:
        x = (np.array([features[n] for n in self.names]) - self.mean) / self.scale
        return -float(self.model.predict(x[None])[0])


def reviewed_task(task: Task, f1: float) -> Reviewed:
    """A task as the service's region model reads a reviewed one: shown regions, the mirror's, which shown regions
    are right (IoU >= 0.5 with an unmatched truth box of its label, greedy by score), F1, the default score."""
    served = task.served()
    return Reviewed(served, task.served(1), np.array([r[2] for r in region_rows(task)[0]], bool), f1,
                    scoring.errors_review_score([served, task.served(1)]))


class ProjectRegionModel:
    """The service's learned region model (`backend.predictions.region_model`) fitted on the reviewed half: with
    `select`, only where the service would choose it (`select_region_model` on that half), else the default score."""

    def __init__(self, tasks: list[Reviewed], select: bool):
        self.learned = None  # out-of-fold learned scores of `tasks` where selected
        if select:
            self.model, self.learned, _ = select_region_model(tasks)
        else:
            try:
                self.model = RegionModel.fit([(t.served, t.mirror, t.kept) for t in tasks])
            except RegionModelError:
                self.model = None

    def __call__(self, task: Task) -> float:
        served, mirror = task.served(), task.served(1)
        if self.model is None:
            return scoring.errors_review_score([served, mirror])
        return self.model.score(served, mirror)


def region_rows(task: Task) -> tuple[list[tuple], list[float]]:
    """The served regions of a task as (fused confidence, label, right?, log relative area, in the mirror?, score),
    and the halved scores of the mirror's regions the image lacks."""
    served, mirror = task.served(), task.served(1)
    pairs = {i: (j, iou) for i, j, iou in scoring.match_regions(served, mirror)}
    right = np.zeros(len(served), bool)
    if len(served) and len(task.boxes):
        overlaps, free = box_iou(served.xyxy, task.boxes), np.ones(len(task.boxes), bool)
        truth_labels = np.array(task.labels, dtype=object)
        for i in np.argsort(-served.scores, kind="stable"):
            candidates = np.where(free & (truth_labels == served.labels[i]), overlaps[i], -1.0)
            j = int(np.argmax(candidates))
            if candidates[j] >= 0.5:
                free[j], right[i] = False, True
    size = served.image_size.width * served.image_size.height
    rows = []
    for i in range(len(served)):
        j, iou = pairs.get(i, (None, 0.0))
        score = float(served.scores[i])
        fused = (score + float(mirror.scores[j])) / 2 * iou if j is not None else score / 2
        x1, y1, x2, y2 = served.xyxy[i]
        rows.append((fused, served.labels[i], bool(right[i]), float(np.log((x2 - x1) * (y2 - y1) / size + 1e-6)),
                     float(j is not None), score))
    matched = {j for j, _ in pairs.values()}
    return rows, [float(mirror.scores[j]) / 2 for j in range(len(mirror)) if j not in matched]


# ---- the two domains ---------------------------------------------------------------------------------------------

def _fold(name: str, folds: int) -> int:
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % folds


def tree_tasks(args) -> tuple[list[tuple], dict]:
    """Out-of-fold tree tasks [(name, views, boxes, labels)] (plain tuples: the cache outlives this script) and what
    served them ({"folds": [{"train_tiles", "epochs", "train_s", "min_size"}], ...})."""
    from retrain import sample_data, tiles

    items = list(tiles(sample_data(args.data), 200))
    folds = [_fold(name, args.folds) for name, _, _ in items]
    tasks, stats = [None] * len(items), []
    for fold in range(args.folds):
        train = [(img, b, np.ones(len(b), np.int64)) for (_, img, b), f in zip(items, folds) if f != fold]
        test = [i for i, f in enumerate(folds) if f == fold]
        detector, stat = _train_tree_detector(train, args)
        stats.append(stat)
        predict_tiles = _predict_served if args.served == "fused" else _predict_views
        found = predict_tiles(detector, [items[i][1] for i in test], args.views, args.device)
        for i, views in zip(test, found):
            tasks[i] = (items[i][0], views, items[i][2], ("tree",) * len(items[i][2]))
        print(f"  fold {fold}: {len(train)} training tiles, {stat['epochs']} epochs in {stat['train_s']} s, "
              f"{len(test)} tiles predicted on {args.views} views ({args.served}) at {stat['scales']} scale(s), "
              f"{stat['proposals']} proposals")
    return tasks, {"folds": stats, "budget_s": args.budget_s, "views": args.views, "served": args.served,
                   "cut": args.cut}


def project_params(views: int):
    """The train params of a project whose detector fuses `views` dihedral map views: `dihedral` augmentation beyond
    2 views (top-down imagery), else the default `flip`; the recipe's inference (scales, proposals) follows them."""
    from backend.core.params import TrainParams

    return replace(TrainParams(), augment="dihedral" if views > 2 else "flip", tta_views=views)


def _inference_key(views: int) -> str:
    """The recipe's inference in a cache key ("" for one scale with 1,000 proposals in float32, the recipe before
    2026-12-06's scales): cached predictions of another inference are not reused."""
    from backend.training.recipe import fused_scales, inference_fields

    scales = fused_scales(project_params(views))
    fields = inference_fields((0,) * (scales - 1), scales)
    if scales == 1 and fields["test_proposals"] == 1000 and not fields["bf16_inference"]:
        return ""
    return f"-s{scales}p{fields['test_proposals']}{'-bf16' if fields['bf16_inference'] else ''}"


def _train_tree_detector(train: list, args):
    """The train jobs' recipe for a project fusing `args.views` views (`project_params`): its spec, scales and
    proposals at inference included; the views are set when predicting."""
    from backend.models.detector import build_detector
    from backend.training.detector import TrainConfig, train_detector
    from backend.training.recipe import fitted_spec

    params = project_params(args.views)
    spec = replace(fitted_spec([img for img, _, _ in train], [b for _, b, _ in train], 1, params),
                   tta_views=1)  # each view predicted on its own here
    model = build_detector(spec)
    stats = train_detector(model, train, args.device, TrainConfig(
        epochs=200, dihedral=params.augment == "dihedral", time_budget_s=args.budget_s))
    model.eval()
    return model, {"train_tiles": len(train), "epochs": stats["epochs"], "train_s": stats["train_s"],
                   "min_size": spec.min_size, "scales": len(spec.tta_scales) + 1, "proposals": spec.test_proposals,
                   "bf16_inference": spec.bf16_inference}


def _predict_views(model, images: list[np.ndarray], n_views: int, device: str) -> list[list[Detections]]:
    """Per image, candidates (score >= FLOOR, class-aware NMS) of views 0..n_views-1 mapped back to the image."""
    from backend.models.detector_io import predict
    from backend.models.tta import unview_boxes, view

    out = []
    for image in images:
        h, w = image.shape[:2]
        views = [view(image, k) for k in range(n_views)]
        raw = predict(model, views, device)
        found = []
        for k, r in enumerate(raw):
            keep = r["scores"] >= FLOOR
            dets = Detections(unview_boxes(r["boxes"][keep], k, w, h),
                              r["scores"][keep], ["tree"] * int(keep.sum()), (w, h))
            found.append(class_aware_nms(dets.clipped(), PredictParams().nms_iou, PredictParams().max_regions))
        out.append(found)
    return out


def _predict_served(model, images: list[np.ndarray], n_views: int, device: str) -> list[list[Detections]]:
    """Per image, the served detector's candidates (score >= FLOOR, class-aware NMS) on [the image, its mirror mapped
    back], each fusing `n_views` views of its backbone maps (`backend.models.detector_io.predict`)."""
    from backend.models.detector_io import predict

    spec, model.spec = model.spec, replace(model.spec, tta_views=n_views)
    out = []
    try:
        for image in images:
            h, w = image.shape[:2]
            found = []
            for k, r in enumerate(predict(model, [image, mirror_image(image)], device)):
                keep = r["scores"] >= FLOOR
                dets = Detections(r["boxes"][keep], r["scores"][keep], ["tree"] * int(keep.sum()), (w, h))
                dets = unmirror(dets, w) if k else dets
                found.append(class_aware_nms(dets.clipped(), PredictParams().nms_iou, PredictParams().max_regions))
            out.append(found)
    finally:
        model.spec = spec
    return out


def photo_tasks(args) -> list[Task]:
    from backend.adapters.base import LazyModel
    from backend.adapters.classifier import build_classifier
    from backend.pipelines.lime_boxes import LimeBoxesPipeline
    from routing_photos import ONTOLOGY, photo_set

    classifier = build_classifier("efficientnet-lite0", args.device, Path(tempfile.mkdtemp()))
    pipeline = LimeBoxesPipeline(LazyModel("classifier", "efficientnet-lite0", lambda: classifier))
    params = replace(PredictParams(), class_threshold=FLOOR)
    tasks = []
    for k, seed in enumerate(args.seeds):
        photos = photo_set(args.composites, seed)
        photos = photos[len(photos) - args.composites:] if k else photos  # the single photos once

        def predict_set():
            return [pipeline.predict([p.image, mirror_image(p.image)], ONTOLOGY, params) for p in photos]
        singles = "" if k else "-singles"  # the first seed's set holds the single photos too: its own cache
        predicted = cached(args.cache and args.cache / f"photos-{args.composites}-seed{seed}{singles}-floor{FLOOR}.pkl",
                           predict_set)
        tasks += [Task(f"{p.name} (seed {seed})", [image, unmirror(mirror)], PredictParams().class_threshold,
                       p.boxes, p.labels) for p, (image, mirror) in zip(photos, predicted)]
        embed_tasks(tasks[len(tasks) - len(photos):], [p.image for p in photos], args.device)
    return tasks


# ---- report -----------------------------------------------------------------------------------------------------

def evaluate(name: str, tasks: list[Task], splits: int) -> dict:
    """Every variant's routing figures on `splits` random halves of the tasks (means), the learned score fitted on
    the other half each time; prints them."""
    f1, errors = (np.array(c, float) for c in zip(*[task_errors(t.served(), t.boxes, t.labels) for t in tasks]))
    features = [_features(t) for t in tasks]
    embeddings = np.stack([t.embedding for t in tasks]) if all(t.embedding is not None for t in tasks) else None
    counts, shown = np.array([len(t.boxes) for t in tasks]), np.array([len(t.served()) for t in tasks])
    expected = np.array([scoring.agreement_errors([t.served(), t.served(1)]) for t in tasks])
    rng = np.random.default_rng(0)
    rows: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    halves, mixes = [], []  # mixes: the rate mix's k chosen on each half (None: not chosen)
    for _ in range(splits):
        order = rng.permutation(len(tasks))
        reviewed, scored = order[:len(tasks) // 2], order[len(tasks) // 2:]
        halves.append(scored)
        model = LearnedScore([features[i] for i in reviewed], errors[reviewed])
        half = [reviewed_task(tasks[i], f1[i]) for i in reviewed]
        regions, selected = ProjectRegionModel(half, select=False), ProjectRegionModel(half, select=True)
        new, counted = {}, {}
        if embeddings is not None:
            new = dict(zip(scored, novelty(embeddings, scored, reviewed)))
            old = dict(zip(reviewed, novelty(embeddings, reviewed, reviewed)))
            with_novelty = LearnedScore([{**features[i], "novelty": old[i]} for i in reviewed], errors[reviewed])
            raw = np.array([f["errors"] for f in features])
            counted = count_variants(embeddings, counts, expected, shown, f1, scored, reviewed, raw)
            counted["served"], counted["mixed"], k = served_variant(selected, tasks, embeddings, counts, shown, f1,
                                                                    errors, scored, reviewed, raw)
            mixes.append(k)
        for variant, key in VARIANTS.items():
            if key in EMBEDDED and embeddings is None:
                continue
            s = np.array([model(features[i]) if key is None else regions(tasks[i]) if key == "regions"
                          else selected(tasks[i]) if key == "selected" else -new[i] if key == "novelty"
                          else with_novelty({**features[i], "novelty": new[i]}) if key == "learned-novelty"
                          else counted[key][i] if key in counted else features[i][key] for i in scored])
            rows[variant].append(routing_figures(s, f1[scored], errors[scored]))
    rows = {v: r for v, r in rows.items() if r}
    figures = {v: {k: round(float(np.nanmean([r[k] for r in rs])), 3) for k in rs[0]} for v, rs in rows.items()}
    oracle = oracle_figures(f1, errors, halves)
    print(f"\n{name}: {len(tasks)} tasks, {int(errors.sum())} errors (FN+FP at IoU 0.5), mean F1 {f1.mean():.3f}; "
          f"means over {splits} random halves of {len(tasks) - len(tasks) // 2} tasks")
    print(f"  {'variant':28s} {'rho':>6s} " + " ".join(f"{int(f * 100):>5d}%" for f in FRACTIONS))
    for variant, row in figures.items():
        print(f"  {variant:28s} {row['spearman']:6.3f} " +
              " ".join(f"{row[f'errors_found_{int(f * 100)}']:6.3f}" for f in FRACTIONS))
    chosen = [k for k in mixes if k is not None]
    if mixes:
        print(f"  the rate mix was chosen on {len(chosen)} of {len(mixes)} halves"
              + (f" (k {', '.join(f'{k:g}' for k in chosen)})" if chosen else ""))
    n = len(tasks) - len(tasks) // 2
    print(f"  {'random (expected)':28s} {'':6s} " + " ".join(f"{round(f * n) / n:6.3f}" for f in FRACTIONS))
    for variant, row in oracle.items():
        label = variant.replace(" k", f" {row['k']}") if "k" in row else variant
        print(f"  {label:28s} {row['spearman']:6.3f} " +
              " ".join(f"{row.get(f'errors_found_{int(f * 100)}', float('nan')):6.3f}" for f in FRACTIONS))
    return {"figures": figures, "oracle": oracle, "f1": f1, "errors": errors, "features": features, "n_scored": n,
            "rate_mix_chosen": len(chosen), "rate_mix_halves": len(mixes)}


def domain_line(result: dict, variant: str, n_tasks: int) -> dict:
    row = result["figures"][variant]
    n = result["n_scored"]
    return {"variant": variant, "spearman": row["spearman"], "errors_found_10": row["errors_found_10"],
            "errors_found_30": row["errors_found_30"], "errors_found_30_random": round(round(0.3 * n) / n, 3),
            "errors_found_30_mean_score": result["figures"][OLD]["errors_found_30"],
            "spearman_mean_score": result["figures"][OLD]["spearman"],
            "errors_found_30_before": result["figures"][BEFORE]["errors_found_30"],
            "errors_found_10_before": result["figures"][BEFORE]["errors_found_10"],
            "spearman_before": result["figures"][BEFORE]["spearman"],
            **{f"{k}_before_review": result["figures"][UNREVIEWED][k]
               for k in ("spearman", "errors_found_10", "errors_found_30")}, "tasks": n_tasks,
            "errors_found_10_ceiling": result["oracle"][ORACLE_ERRORS]["errors_found_10"],
            "errors_found_30_ceiling": result["oracle"][ORACLE_ERRORS]["errors_found_30"],
            "spearman_at_errors_ceiling": result["oracle"][ORACLE_JOINT]["spearman"],
            "mean_f1": round(float(result["f1"].mean()), 3), "rate_mix_chosen": result["rate_mix_chosen"],
            "rate_mix_halves": result["rate_mix_halves"], "variants": result["figures"]}


def cached(path: Path | None, compute):
    """compute() once; with `path`, its result is pickled there and read back by later runs."""
    if path is not None and path.exists():
        print(f"predictions read from {path}")
        return pickle.loads(path.read_bytes())
    started = time.perf_counter()
    result = compute()
    print(f"predicted in {time.perf_counter() - started:.0f} s")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(result))
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parent / ".cache" / "deepforest-data")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--budget-s", type=float, default=300, help="training seconds per fold")
    parser.add_argument("--views", type=int, default=8, choices=(2, 4, 8), help="dihedral views of each tree tile")
    parser.add_argument("--served", default="fused", choices=("fused", "single"),
                        help="trees: the detector as served (image and mirror, each fusing --views map views) or "
                             "--views single passes on views of the image")
    parser.add_argument("--cut", type=float, default=PredictParams().box_threshold, help="the served score cut (trees)")
    parser.add_argument("--composites", type=int, default=45)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3],
                        help="one set of --composites composites per seed (the single photos once)")
    parser.add_argument("--splits", type=int, default=20, help="random halves each variant is scored on")
    parser.add_argument("--variant", default=MAIN, choices=list(VARIANTS), help="the variant the headline keys report")
    parser.add_argument("--cache", type=Path, default=None,
                        help="directory to keep predictions in (re-scoring without predicting again)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    started = time.perf_counter()

    served = "" if args.served == "single" else f"-{args.served}"
    key = f"trees-f{args.folds}-b{args.budget_s:g}-v{args.views}{served}{_inference_key(args.views)}-floor{FLOOR}.pkl"
    rows, detector = cached(args.cache and args.cache / key, lambda: tree_tasks(args))
    trees = [Task(name, views, args.cut, boxes, labels) for name, views, boxes, labels in rows]
    from retrain import sample_data, tiles

    images = {name: image for name, image, _ in tiles(sample_data(args.data), 200)}
    embed_tasks(trees, [images[t.name] for t in trees], args.device)
    photos = photo_tasks(args)
    results = {"trees": evaluate("trees (project detector, out of fold)", trees, args.splits),
               "photos": evaluate("photos (LIME)", photos, args.splits)}
    domains = {name: domain_line(r, args.variant, len(t)) for (name, r), t in zip(results.items(), (trees, photos))}
    line = {"domains": domains, "variant": args.variant,
            **{f"min_domain_{k}": min(d[k] for d in domains.values())
               for k in ("errors_found_30", "spearman", "errors_found_10")},
            "trees_detector": {"recipe": "backend.training.recipe", **detector}, "photo_seeds": args.seeds,
            "splits": args.splits, "device": args.device, "seconds": round(time.perf_counter() - started, 1)}
    print(json.dumps(line))


if __name__ == "__main__":
    main()
