"""Routing benchmark: does the review-priority score (backend.pipelines.scoring) send annotators to the tasks whose
pre-labels need correcting?

Per task: the score against the task's F1 at IoU 0.5 against ground truth, and its errors (false negatives +
false positives at IoU 0.5, same label). Two sets:
  trees   DeepForest held-out tiles (bench/retrain.py's split), cut into 200-px quarters predicted at native
          scale (the 400-px tiles at `--full-tiles`), by the project's detector (Faster R-CNN, EfficientNet-Lite0
          FPN) trained here by bench/retrain.py's recipe for --budget-s seconds, or loaded with --checkpoint DIR
          (from `bench/retrain.py --save DIR`), served as `TrainedDetector` + clip + class-aware NMS, no TTA;
  photos  the LIME pipeline over ImageNet EfficientNet-Lite0 on real photos and composites of them
          (bench/routing_photos.py).
Each image is predicted with its horizontal mirror in the same batch. Reported per set and pooled: Spearman rho
(score vs F1) and the share of all errors found by reviewing the lowest-scored 10/20/30/50 % of tasks (ties at
the cut counted at their expected share), against random order (expected value = the share of tasks reviewed)
and against the old score (mean region confidence), for every score variant.

Usage: python bench/routing.py [--checkpoint DIR] [--budget-s S] [--composites N] [--seeds K ...] [--cache DIR] [--tasks]
       [--full-tiles] [--device cpu|cuda]
Ends with one JSON line: spearman, errors_found_{10,20,30,50}, errors_found_30_random, errors_found_30_mean_score,
tasks (pooled over both sets; per-set figures as trees_* and photos_*), variants, seconds.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from backend.core.detections import Detections, box_iou, class_aware_nms  # noqa: E402
from backend.core.params import PredictParams  # noqa: E402
from backend.pipelines.scoring import confidence_score, mirror_image, review_score  # noqa: E402

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


def errors_found(scores: np.ndarray, errors: np.ndarray, fraction: float) -> float:
    """Share of all errors in the lowest-scored round(fraction x tasks) tasks; a tie group straddling the cut
    contributes its errors in proportion to the part of it reviewed (the expectation over tie orders)."""
    scores, errors = np.asarray(scores, float), np.asarray(errors, float)
    total, k = errors.sum(), int(round(fraction * len(scores)))
    if total == 0:
        return float("nan")
    below = scores < np.sort(scores)[k - 1] if k > 0 else np.zeros(len(scores), bool)
    found = errors[below].sum()
    if k > 0:
        tie = scores == np.sort(scores)[k - 1]
        found += errors[tie].sum() * (k - below.sum()) / tie.sum()
    return float(found / total)


def routing_figures(scores: np.ndarray, f1: np.ndarray, errors: np.ndarray) -> dict:
    """Spearman rho (score vs F1) and errors found at each of `FRACTIONS`."""
    rho = spearmanr(scores, f1).statistic if np.ptp(scores) > 0 and np.ptp(f1) > 0 else float("nan")
    out = {"spearman": round(float(rho), 3)}
    for fraction in FRACTIONS:
        out[f"errors_found_{int(fraction * 100)}"] = round(errors_found(scores, errors, fraction), 3)
    return out


# ---- score variants ---------------------------------------------------------------------------------------------

def _certain(dets: Detections) -> Detections:
    return Detections(dets.xyxy, np.ones(len(dets), np.float32), dets.labels, dets.image_size, dets.masks)


VARIANTS = {
    "mirror, singles 0": lambda d, m: review_score(d, m, unmatched_credit=0.0),
    "mirror, singles 0, IoU>=0.3": lambda d, m: review_score(d, m, min_iou=0.3, unmatched_credit=0.0),
    "mirror, singles 1/2": lambda d, m: review_score(d, m, unmatched_credit=0.5),
    "mirror, singles 1/2, IoU>=0.3": lambda d, m: review_score(d, m, min_iou=0.3, unmatched_credit=0.5),
    "mirror agreement only": lambda d, m: review_score(_certain(d), _certain(m), unmatched_credit=0.0),
    "mean (old score)": lambda d, m: confidence_score(d, "mean"),
    "min": lambda d, m: confidence_score(d, "min"),
    "geometric": lambda d, m: confidence_score(d, "geometric"),
    "product": lambda d, m: confidence_score(d, "product"),
    "lower_half": lambda d, m: confidence_score(d, "lower_half"),
}
MAIN, OLD = "mirror, singles 1/2", "mean (old score)"


# ---- the two sets ------------------------------------------------------------------------------------------------

def tree_tasks(data: Path, side: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, uint8 (side, side, 3) image, float32 (N, 4) boxes) for the `side`-px cuts of bench/retrain.py's
    held-out 400-px tiles (boxes kept as retrain.tiles keeps them: >= half their area inside, >= 4 px)."""
    from PIL import Image

    from retrain import TILE, held_out, sample_data, voc_boxes

    Image.MAX_IMAGE_PIXELS = None
    out = []
    for xml_path in sorted(sample_data(data).glob("*.xml")):
        image, boxes = None, voc_boxes(xml_path)
        for name in _held_out_tiles(xml_path, held_out, TILE):
            if image is None:
                image = np.asarray(Image.open(xml_path.with_suffix(".png")).convert("RGB"))
            tx, ty = (int(v) for v in name.split("@")[1].split(","))
            for y in range(ty, ty + TILE, side):
                for x in range(tx, tx + TILE, side):
                    shifted = boxes - [x, y, x, y]
                    clipped = shifted.clip(0, side)
                    area = np.prod(shifted[:, 2:] - shifted[:, :2], axis=1)
                    kept = np.prod(clipped[:, 2:] - clipped[:, :2], axis=1)
                    keep = (kept >= 0.5 * area) & ((clipped[:, 2:] - clipped[:, :2]) >= 4).all(axis=1)
                    if keep.any():
                        out.append((f"{xml_path.stem}@{x},{y}", image[y:y + side, x:x + side].copy(), clipped[keep]))
    return out


def _held_out_tiles(xml_path: Path, held_out, tile: int) -> list[str]:
    from PIL import Image

    with Image.open(xml_path.with_suffix(".png")) as im:
        w, h = im.size
    return [f"{xml_path.stem}@{x},{y}" for y in range(0, h - tile + 1, tile) for x in range(0, w - tile + 1, tile)
            if held_out(f"{xml_path.stem}@{x},{y}")]


def tree_detector(args) -> Path:
    """The checkpoint directory: --checkpoint, or a detector trained now by bench/retrain.py's recipe (no TTA)."""
    if args.checkpoint:
        return args.checkpoint
    from backend.models.detector import DetectorSpec, build_detector
    from backend.models.detector_io import save_detector
    from backend.training.detector import TrainConfig, train_detector
    from retrain import TILE, split

    train, _, _ = split(args.data)
    spec = DetectorSpec(num_classes=1, min_size=TILE, max_size=2 * TILE,
                        train_sizes=(int(TILE * 0.75), int(TILE * 1.25)), tta_views=1)
    config = TrainConfig(epochs=200, dihedral=True, time_budget_s=args.budget_s)
    model = build_detector(spec)
    stats = train_detector(model, train, args.device, config)
    print(f"trained the tree detector {stats['epochs']} epochs in {stats['train_s']} s on {args.device}")
    directory = Path(tempfile.mkdtemp(prefix="routing-detector-"))
    save_detector(directory, model, ["tree"], {})
    return directory


def predict_trees(args, tasks) -> list[tuple[Detections, Detections]]:
    """(regions on the image, regions on its mirror) per task, as the `trained` pipeline serves them."""
    from backend.adapters.trained_detector import TrainedDetector

    detector = TrainedDetector(tree_detector(args), args.device)
    side = tasks[0][1].shape[0]
    detector.model.transform.min_size, detector.model.transform.max_size = (side,), 2 * side  # native scale
    params = PredictParams()
    images = [img for _, img, _ in tasks]
    found = detector.detect(images + [mirror_image(img) for img in images], params.box_threshold)
    found = [class_aware_nms(d.clipped(), params.nms_iou, params.max_regions) for d in found]
    return list(zip(found[:len(images)], found[len(images):]))


def predict_photos(args, photos) -> list[tuple[Detections, Detections]]:
    from backend.adapters.base import LazyModel
    from backend.adapters.classifier import build_classifier
    from backend.pipelines.lime_boxes import LimeBoxesPipeline
    from routing_photos import ONTOLOGY

    classifier = build_classifier("efficientnet-lite0", args.device, Path(tempfile.mkdtemp()))
    pipeline = LimeBoxesPipeline(LazyModel("classifier", "efficientnet-lite0", lambda: classifier))
    out = []
    for photo in photos:  # one image and its mirror per call, as the service would batch them
        image, mirror = pipeline.predict([photo.image, mirror_image(photo.image)], ONTOLOGY, PredictParams())
        out.append((image, mirror))
    return out


def detector_ap50(predictions, truths) -> float:
    """AP50 of the image-view regions (one label) on the tasks: how good the pre-labels being routed are."""
    from backend.training.metrics import detection_ap

    dicts = [{"boxes": d.xyxy, "scores": d.scores, "labels": np.ones(len(d), np.int64)} for d, _ in predictions]
    truth = [{"boxes": b, "labels": np.ones(len(b), np.int64)} for b, _ in truths]
    return round(float(detection_ap(dicts, truth, classes=[1])["ap50"]), 3)


# ---- report -----------------------------------------------------------------------------------------------------

def evaluate(name: str, predictions, truths) -> dict:
    """Per-variant routing figures of one set; prints them. truths: [(boxes, labels)] per task."""
    f1, errors = (np.array(column, float) for column in
                  zip(*[task_errors(d, b, l) for (d, _), (b, l) in zip(predictions, truths)]))
    scores = {v: np.array([fn(d, m) for d, m in predictions]) for v, fn in VARIANTS.items()}
    print(f"\n{name}: {len(truths)} tasks, {int(errors.sum())} errors (FN+FP at IoU 0.5), mean F1 {f1.mean():.3f}")
    print(f"  {'variant':28s} {'rho':>6s} " + " ".join(f"{int(f * 100):>5d}%" for f in FRACTIONS))
    figures = {}
    for variant, s in scores.items():
        figures[variant] = routing_figures(s, f1, errors)
        row = figures[variant]
        print(f"  {variant:28s} {row['spearman']:6.3f} " +
              " ".join(f"{row[f'errors_found_{int(f * 100)}']:6.3f}" for f in FRACTIONS))
    print(f"  {'random (expected)':28s} {'':6s} " + " ".join(f"{round(f * len(truths)) / len(truths):6.3f}"
                                                            for f in FRACTIONS))
    return {"figures": figures, "scores": scores, "f1": f1, "errors": errors}


def summary(prefix: str, result: dict, n: int) -> dict:
    main, old = result["figures"][MAIN], result["figures"][OLD]
    return {f"{prefix}spearman": main["spearman"],
            **{f"{prefix}{k}": v for k, v in main.items() if k.startswith("errors_found")},
            f"{prefix}errors_found_30_random": round(round(0.3 * n) / n, 3),
            f"{prefix}errors_found_30_mean_score": old["errors_found_30"],
            f"{prefix}spearman_mean_score": old["spearman"], f"{prefix}tasks": n}


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


def print_tasks(names, predictions, truths, result) -> None:
    for i, (name, (dets, mirror), (boxes, _)) in enumerate(zip(names, predictions, truths)):
        print(f"    {name:36s} truth {len(boxes):2d} regions {len(dets):2d} mirror {len(mirror):2d} "
              f"F1 {result['f1'][i]:.2f} errors {int(result['errors'][i]):2d} score {result['scores'][MAIN][i]:.3f} "
              f"old {result['scores'][OLD][i]:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parent / ".cache" / "deepforest-data")
    parser.add_argument("--checkpoint", type=Path, default=None, help="directory with a detector.pt to load")
    parser.add_argument("--budget-s", type=float, default=600, help="training time budget without --checkpoint")
    parser.add_argument("--full-tiles", action="store_true", help="400-px held-out tiles instead of 200-px quarters")
    parser.add_argument("--composites", type=int, default=45)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1],
                        help="one set of --composites composites per seed (the single photos once)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="directory to keep predictions in (re-scoring without predicting again)")
    parser.add_argument("--tasks", action="store_true", help="print one line per task")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    started = time.perf_counter()

    side = 400 if args.full_tiles else 200
    trees = tree_tasks(args.data, side)
    tree_truths = [(b, ("tree",) * len(b)) for _, _, b in trees]
    key = args.checkpoint.name if args.checkpoint else f"trained-{args.budget_s:g}s"
    tree_predictions = cached(args.cache and args.cache / f"trees-{side}-{key}.pkl", lambda: predict_trees(args, trees))
    tree_result = evaluate("trees (trained detector)", tree_predictions, tree_truths)
    tree_ap50 = detector_ap50(tree_predictions, tree_truths)
    print(f"  the detector's AP50 on these tasks: {tree_ap50:.3f}")
    if args.tasks:
        print_tasks([n for n, _, _ in trees], tree_predictions, tree_truths, tree_result)

    from routing_photos import photo_set
    photos, photo_predictions = [], []
    for k, seed in enumerate(args.seeds):
        found = photo_set(args.composites, seed)
        predicted = cached(args.cache and args.cache / f"photos-{args.composites}-seed{seed}.pkl",
                           lambda: predict_photos(args, found))
        skip = len(found) - args.composites if k else 0  # the single photos come first in every set
        photos += [replace(p, name=f"{p.name} (seed {seed})") for p in found[skip:]]
        photo_predictions += predicted[skip:]
    photo_truths = [(p.boxes, p.labels) for p in photos]
    photo_result = evaluate("photos (LIME)", photo_predictions, photo_truths)
    if args.tasks:
        print_tasks([p.name for p in photos], photo_predictions, photo_truths, photo_result)

    pooled = {key: np.concatenate([tree_result[key], photo_result[key]]) for key in ("f1", "errors")}
    figures = {v: routing_figures(np.concatenate([tree_result["scores"][v], photo_result["scores"][v]]),
                                  pooled["f1"], pooled["errors"]) for v in VARIANTS}
    n = len(pooled["f1"])
    print(f"\npooled: {n} tasks, {int(pooled['errors'].sum())} errors")
    for variant, row in figures.items():
        print(f"  {variant:28s} {row['spearman']:6.3f} " +
              " ".join(f"{row[f'errors_found_{int(f * 100)}']:6.3f}" for f in FRACTIONS))
    line = {**summary("", {"figures": figures}, n), **summary("trees_", tree_result, len(trees)),
            **summary("photos_", photo_result, len(photos)),
            "trees_mean_f1": round(float(tree_result["f1"].mean()), 3),
            "photos_mean_f1": round(float(photo_result["f1"].mean()), 3),
            "variants": {v: {"pooled": figures[v], "trees": tree_result["figures"][v],
                             "photos": photo_result["figures"][v]} for v in VARIANTS},
            "trees_detector_ap50": tree_ap50, "tree_tile_px": side, "photo_seeds": args.seeds, "device": args.device,
            "seconds": round(time.perf_counter() - started, 1)}
    print(json.dumps(line))


if __name__ == "__main__":
    main()
