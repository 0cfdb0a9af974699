"""Label-error benchmark of the review page's suspicious list (`backend.review.suspicious`).

DeepForest sample tiles (aerial tree crowns, the data of `bench/retrain.py`) get injected annotation errors:
- variant `one-class` ("tree"): 10 % of the boxes deleted, another 10 % shifted by at least half their size
  (along x or y or both), and as many spurious boxes as 10 % of the boxes (random places that overlap no true box
  by IoU >= 0.1, sizes drawn from the true boxes);
- variant `two-class`: trees split into "small" / "large" by box side (sqrt area) at the median; 10 % of the boxes
  get the other label (swapped).
Predictions come from the project's detector recipe (`backend.training.detector`, as in `bench/retrain.py`)
trained WITHOUT the task: k-fold over tiles, the detector of fold f is trained on the corrupted annotations of
the other folds and predicts the tiles of fold f (test-time fusion of `--tta` views, kept at score >=
`--min-score`, the service's default `box_threshold`). Annotations and predictions go through Label Studio JSON
(`detections_to_results`) into `read_export` and `find_suspicious`, exactly as the review page reads them.

Recall at k = 2 x (errors injected in the variant): an injected error counts as found when one of the first k
entries is on its task and one of the entry's boxes (its region, or the paired prediction region) overlaps one of
the error's boxes with IoU >= 0.5 (deleted: the removed box; shifted: the shifted or the original box; spurious:
the added box; swapped: the relabelled box). Overall = errors found / errors injected over both variants.

For comparison, cleanlab's ObjectLab (`cleanlab.object_detection`, AGPL: a bench-time install only,
`pip install cleanlab`, never a dependency of the service) gets the same annotations and predictions: its per-box
scores (overlooked per prediction, min(bad location, swap) per annotated box; lower = worse) ranked into one list,
evaluated the same way; plus its image-level `filter.find_label_issues`.

Usage: python bench/label_errors.py [--folds 3] [--budget-s 300] [--tta 8] [--min-score 0.3 0.05]
                                   [--variants one-class two-class] [--threads N] [--cache DIR]
Prints figures and ends with one JSON line: recall_at_2k and recall_at_2k_<kind> for deleted, shifted, spurious,
swapped (at the first --min-score), cleanlab_recall_at_2k[_<kind>], the same per score cut (by_min_score), AP50
and epochs of the folds, timings.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from retrain import TILE, sample_data, tiles  # noqa: E402

from backend.core.detections import Detections, box_iou  # noqa: E402
from backend.core.ontology import Control, Ontology  # noqa: E402
from backend.labelstudio.results import detections_to_results  # noqa: E402
from backend.review.export import read_export  # noqa: E402
from backend.review.suspicious import find_suspicious  # noqa: E402
from backend.models.detector import DetectorSpec, build_detector  # noqa: E402
from backend.models.detector_io import predict  # noqa: E402
from backend.training.detector import TrainConfig, train_detector  # noqa: E402
from backend.training.metrics import detection_ap  # noqa: E402

KINDS = ("deleted", "shifted", "spurious", "swapped")
VARIANTS = {"one-class": ("tree",), "two-class": ("small", "large")}
ANNOTATED_AT = "2026-03-02T12:00:00Z"
PREDICTED_AT = "2026-03-01T12:00:00Z"  # before the annotation: the default out-of-sample rule holds


def inject(items: list, variant: str, rng: np.random.Generator, rate: float = 0.1):
    """items [(tile id, image, float32 (N, 4) true boxes)] → (corrupted [(boxes, labels as str)], true labels
    per tile, errors [{"kind", "tile" (index), "boxes": [xyxy, ...]}])."""
    names = VARIANTS[variant]
    all_boxes = np.concatenate([b for _, _, b in items])
    side = np.sqrt(np.prod(all_boxes[:, 2:] - all_boxes[:, :2], axis=1))
    median = float(np.median(side))
    truth = [tuple(names[0] if len(names) == 1 else names[int(np.sqrt(np.prod(b[2:] - b[:2])) >= median)]
                   for b in boxes) for _, _, boxes in items]
    index = [(t, i) for t, (_, _, boxes) in enumerate(items) for i in range(len(boxes))]
    n_pick = int(round(rate * len(index)))
    order = rng.permutation(len(index))
    boxes = [b.copy() for _, _, b in items]
    labels = [list(t) for t in truth]
    errors, drop = [], set()
    if variant == "one-class":
        for t, i in (index[k] for k in order[:n_pick]):
            drop.add((t, i))
            errors.append({"kind": "deleted", "tile": t, "boxes": [items[t][2][i].tolist()]})
        for t, i in (index[k] for k in order[n_pick:2 * n_pick]):
            original = items[t][2][i]
            w, h = original[2:] - original[:2]
            axis = rng.integers(3)  # 0: x, 1: y, 2: both
            fx = rng.uniform(0.5, 0.8) * rng.choice([-1, 1]) if axis in (0, 2) else rng.uniform(-0.3, 0.3)
            fy = rng.uniform(0.5, 0.8) * rng.choice([-1, 1]) if axis in (1, 2) else rng.uniform(-0.3, 0.3)
            dx, dy = fx * w, fy * h
            dx = float(np.clip(dx, -original[0], TILE - original[2]))  # stay inside the tile ...
            dy = float(np.clip(dy, -original[1], TILE - original[3]))
            if abs(dx) < 0.5 * w and abs(dy) < 0.5 * h:  # ... and if the border ate the shift, go the other way
                dx = -np.sign(fx) * 0.5 * w if abs(fx) >= 0.5 else dx
                dy = -np.sign(fy) * 0.5 * h if abs(fy) >= 0.5 else dy
            moved = original + np.array([dx, dy, dx, dy], np.float32)
            boxes[t][i] = moved
            errors.append({"kind": "shifted", "tile": t, "boxes": [moved.tolist(), original.tolist()]})
        sizes = all_boxes[:, 2:] - all_boxes[:, :2]
        added = [[] for _ in items]
        while sum(len(a) for a in added) < n_pick:
            t = int(rng.integers(len(items)))
            w, h = sizes[rng.integers(len(sizes))]
            x, y = rng.uniform(0, TILE - w), rng.uniform(0, TILE - h)
            box = np.array([x, y, x + w, y + h], np.float32)
            if len(items[t][2]) and box_iou(box[None], items[t][2]).max() >= 0.1:
                continue
            added[t].append(box)
            errors.append({"kind": "spurious", "tile": t, "boxes": [box.tolist()]})
        out = []
        for t in range(len(items)):
            keep = [i for i in range(len(boxes[t])) if (t, i) not in drop]
            b = np.concatenate([boxes[t][keep], np.array(added[t], np.float32).reshape(-1, 4)])
            out.append((b, [labels[t][i] for i in keep] + [names[0]] * len(added[t])))
        return out, truth, errors
    for t, i in (index[k] for k in order[:n_pick]):
        labels[t][i] = names[1 - names.index(labels[t][i])]
        errors.append({"kind": "swapped", "tile": t, "boxes": [items[t][2][i].tolist()]})
    return [(boxes[t], labels[t]) for t in range(len(items))], truth, errors


def fold_of(tile_id: str, folds: int, seed: int) -> int:
    return int(hashlib.sha256(f"{seed}:{tile_id}".encode()).hexdigest()[:8], 16) % folds


def out_of_fold_predictions(items, corrupted, names, args, log) -> tuple[list[dict], list[dict]]:
    """Per tile {"boxes", "scores", "labels" (int 1..C)} from the detector trained on the other folds; and per
    fold {"fold", "train_tiles", "test_tiles", "train_s", "epochs", "ap50" (vs the true boxes, set later)}."""
    folds = [fold_of(tid, args.folds, args.seed) for tid, _, _ in items]
    predictions: list[dict | None] = [None] * len(items)
    stats = []
    spec = DetectorSpec(num_classes=len(names), min_size=TILE, max_size=2 * TILE,
                        train_sizes=(int(0.75 * TILE), int(1.25 * TILE)), tta_views=args.tta)
    config = TrainConfig(epochs=200, dihedral=True, time_budget_s=args.budget_s, seed=args.seed)
    for fold in range(args.folds):
        train = [(items[t][1], corrupted[t][0], np.array([names.index(l) + 1 for l in corrupted[t][1]], np.int64))
                 for t in range(len(items)) if folds[t] != fold]
        test = [t for t in range(len(items)) if folds[t] == fold]
        model = build_detector(spec)
        run = train_detector(model, train, args.device, config)
        started = time.perf_counter()
        for t, p in zip(test, predict(model, [items[t][1] for t in test], args.device)):
            predictions[t] = p
        stats.append({"fold": fold, "train_tiles": len(train), "test_tiles": len(test), "train_s": run["train_s"],
                      "epochs": run["epochs"], "predict_s": round(time.perf_counter() - started, 1)})
        log(f"  fold {fold}: trained on {len(train)} tiles, {run['epochs']} epochs in {run['train_s']} s; "
            f"predicted {len(test)} tiles in {stats[-1]['predict_s']} s")
    return predictions, stats


def export(items, corrupted, predictions, names, min_score: float) -> tuple[list[dict], Ontology]:
    """Label Studio JSON export: one task per tile with its corrupted annotation and out-of-fold prediction."""
    control = Control("label", "RectangleLabels", "image", "image", tuple(names))
    tasks = []
    for t, (tid, _, _) in enumerate(items):
        boxes, labels = corrupted[t]
        ann = detections_to_results(Detections(boxes, np.ones(len(boxes)), labels, (TILE, TILE)), [control])
        for region in ann:
            region.pop("score")
        p = predictions[t]
        keep = p["scores"] >= min_score
        dets = Detections(p["boxes"][keep], p["scores"][keep], [names[int(c) - 1] for c in p["labels"][keep]],
                          (TILE, TILE)).clipped()
        pred = detections_to_results(dets, [control])
        tasks.append({"id": t + 1, "data": {"image": f"deepforest://{tid}"},
                      "annotations": [{"id": t + 1, "result": ann, "completed_by": 1, "created_at": ANNOTATED_AT,
                                       "updated_at": ANNOTATED_AT, "was_cancelled": False, "ground_truth": False,
                                       "lead_time": 60.0}],
                      "predictions": [{"id": t + 1, "result": pred, "model_version": "out-of-fold",
                                       "score": float(np.mean(dets.scores)) if len(dets) else 0.0,
                                       "created_at": PREDICTED_AT}]})
    return tasks, Ontology((control,))


def found(errors: list[dict], flagged: list[tuple[int, list]]) -> list[bool]:
    """errors [{"tile", "boxes"}]; flagged [(tile, [xyxy, ...])] → per error: some flagged box on its tile
    overlaps one of its boxes with IoU >= 0.5."""
    by_tile: dict[int, list] = {}
    for tile, boxes in flagged:
        by_tile.setdefault(tile, []).extend(boxes)
    out = []
    for error in errors:
        boxes = by_tile.get(error["tile"], [])
        out.append(bool(boxes) and bool((box_iou(np.array(error["boxes"]), np.array(boxes)) >= 0.5).any()))
    return out


def ours(tasks, ontology, errors, k: int) -> dict:
    started = time.perf_counter()
    report = find_suspicious(read_export(tasks, ontology), "http://localhost:8080", 1, limit=None)
    seconds = time.perf_counter() - started
    top = report["entries"][:k]
    flagged = [(e["task_id"] - 1, [e["region"]["xyxy"]] + ([e["other_region"]["xyxy"]] if e["other_region"] else []))
               for e in top]
    hits = found(errors, flagged)
    every = found(errors, [(e["task_id"] - 1, [e["region"]["xyxy"]] + ([e["other_region"]["xyxy"]]
                                                                       if e["other_region"] else []))
                           for e in report["entries"]])
    useful = sum(any(found(errors, [f])) for f in flagged)
    return {"hits": hits, "in_list": every, "n_entries": report["n_entries"], "seconds": round(seconds, 3),
            "top_k_kinds": {kind: sum(e["kind"] == kind for e in top) for kind in report["by_kind"]},
            "precision_at_2k": round(useful / max(len(top), 1), 4)}


def cleanlab_figures(items, corrupted, predictions, names, errors, k: int, min_score: float) -> dict | None:
    try:
        from cleanlab.object_detection.filter import find_label_issues
        from cleanlab.object_detection.rank import (compute_badloc_box_scores, compute_overlooked_box_scores,
                                                    compute_swap_box_scores)
    except ImportError:
        return None
    labels, preds = [], []
    for t in range(len(items)):
        boxes, names_t = corrupted[t]
        labels.append({"bboxes": np.asarray(boxes, np.float32).reshape(-1, 4),
                       "labels": np.array([names.index(n) for n in names_t], int)})
        p = predictions[t]
        keep = p["scores"] >= min_score
        b, s, c = p["boxes"][keep], p["scores"][keep], p["labels"][keep] - 1
        preds.append(np.array([np.c_[b[c == j], s[c == j]].astype(np.float32).reshape(-1, 5)
                               for j in range(len(names))], dtype=object))
    started = time.perf_counter()
    over = compute_overlooked_box_scores(labels=labels, predictions=preds)
    badloc = compute_badloc_box_scores(labels=labels, predictions=preds)
    swap = compute_swap_box_scores(labels=labels, predictions=preds)
    issues = find_label_issues(labels, preds)
    seconds = time.perf_counter() - started
    ranked = []
    for t in range(len(items)):
        kept = predictions[t]["scores"] >= min_score
        pred_boxes = predictions[t]["boxes"][kept]
        # cleanlab lists an image's predictions class by class
        by_class = np.concatenate([np.nonzero(predictions[t]["labels"][kept] - 1 == j)[0] for j in range(len(names))])
        for score, i in zip(over[t], by_class):
            if np.isfinite(score):
                ranked.append((float(score), t, pred_boxes[i].tolist()))
        for j, box in enumerate(labels[t]["bboxes"]):
            scores = [s[j] for s in (badloc[t], swap[t]) if len(s) > j and np.isfinite(s[j])]
            if scores:
                ranked.append((float(min(scores)), t, box.tolist()))
    ranked.sort(key=lambda r: r[0])
    hits = found(errors, [(t, [box]) for _, t, box in ranked[:k]])
    with_errors = {e["tile"] for e in errors}
    flagged = set(np.nonzero(issues)[0].tolist())
    return {"hits": hits, "seconds": round(seconds, 2), "n_ranked": len(ranked),
            "images_flagged": len(flagged), "images_with_errors": len(with_errors),
            "images_with_errors_flagged": len(flagged & with_errors)}


def evaluate(items, corrupted, predictions, names, errors, k: int, min_score: float, log) -> dict:
    """Our suspicious list and cleanlab's ranking on the predictions kept at `min_score`: hits per error, figures."""
    counts = {kind: sum(e["kind"] == kind for e in errors) for kind in KINDS if any(e["kind"] == kind for e in errors)}
    per = lambda hits: {kind: round(float(np.mean([h for e, h in zip(errors, hits) if e["kind"] == kind])), 4)  # noqa: E731
                        for kind in counts}
    tasks, ontology = export(items, corrupted, predictions, names, min_score)
    result = ours(tasks, ontology, errors, k)
    log(f"  predictions >= {min_score}: suspicious list of {result['n_entries']} entries in {result['seconds']} s; "
        f"recall at k={k}: {np.mean(result['hits']):.3f} {per(result['hits'])}; anywhere in the list "
        f"{np.mean(result['in_list']):.3f}; share of the top k on an injected error {result['precision_at_2k']}; "
        f"kinds in the top k {result['top_k_kinds']}")
    out = {"hits": result["hits"], "recall_at_2k": round(float(np.mean(result["hits"])), 4),
           "recall_at_2k_by_kind": per(result["hits"]), "recall_anywhere": round(float(np.mean(result["in_list"])), 4),
           "precision_at_2k": result["precision_at_2k"], "n_entries": result["n_entries"],
           "top_k_kinds": result["top_k_kinds"], "suspicious_s": result["seconds"]}
    theirs = cleanlab_figures(items, corrupted, predictions, names, errors, k, min_score)
    if theirs is None:
        log("  cleanlab is not installed (pip install cleanlab): comparison skipped")
        return out
    log(f"  cleanlab ObjectLab on the same inputs: {theirs['n_ranked']} scored boxes in {theirs['seconds']} s; recall "
        f"at k={k}: {np.mean(theirs['hits']):.3f} {per(theirs['hits'])}; find_label_issues flags "
        f"{theirs['images_flagged']} of {len(items)} images ({theirs['images_with_errors_flagged']} of the "
        f"{theirs['images_with_errors']} with injected errors)")
    out["cleanlab"] = {"hits": theirs["hits"], "recall_at_2k": round(float(np.mean(theirs["hits"])), 4),
                       "recall_at_2k_by_kind": per(theirs["hits"]), "images_flagged": theirs["images_flagged"],
                       "images_with_errors": theirs["images_with_errors"],
                       "images_with_errors_flagged": theirs["images_with_errors_flagged"]}
    return out


def overall(results: list[tuple[list[dict], list[bool]]], prefix: str) -> dict:
    """[(errors, hits)] of the variants → {prefix + "recall_at_2k": all, prefix + "recall_at_2k_<kind>": ...}."""
    by_kind = {kind: [h for errors, hits in results for e, h in zip(errors, hits) if e["kind"] == kind]
               for kind in KINDS}
    every = [h for hits in by_kind.values() for h in hits]
    line = {f"{prefix}recall_at_2k": round(float(np.mean(every)), 4) if every else None}
    for kind in KINDS:
        line[f"{prefix}recall_at_2k_{kind}"] = round(float(np.mean(by_kind[kind])), 4) if by_kind[kind] else None
    return line


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parent / ".cache" / "deepforest-data")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=None, help="training seconds per fold (default 300 CPU, 120 GPU)")
    parser.add_argument("--tta", type=int, default=8, help="dihedral views fused at prediction (1, 2, 4, 8)")
    parser.add_argument("--min-score", type=float, nargs="+", default=[0.3, 0.05],
                        help="prediction score cuts to evaluate; the first gives the headline figures (0.3: the "
                             "service's default box_threshold, what Label Studio stores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's; 1 is faster on a CPU shared with other work)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="directory to save / reuse the out-of-fold predictions (skips training when present)")
    args = parser.parse_args()
    args.budget_s = args.budget_s or (120 if args.device.startswith("cuda") else 300)
    if args.threads:
        torch.set_num_threads(args.threads)
    log = lambda text: print(text, flush=True)  # noqa: E731
    started = time.perf_counter()
    items = list(tiles(sample_data(args.data)))
    log(f"{len(items)} DeepForest tiles of {TILE} px, {sum(len(b) for _, _, b in items)} boxes; {args.folds} folds, "
        f"{args.budget_s:.0f} s training per fold on {args.device} ({torch.get_num_threads()} threads), {args.tta} views")
    variants, results = {}, {m: [] for m in args.min_score}
    for variant in args.variants:
        names = VARIANTS[variant]
        corrupted, truth, errors = inject(items, variant, np.random.default_rng(args.seed))
        k = 2 * len(errors)
        counts = {kind: sum(e["kind"] == kind for e in errors) for kind in KINDS if any(e["kind"] == kind for e in errors)}
        log(f"[{variant}] injected {len(errors)} errors {counts}; k = {k}")
        cache = (args.cache / f"{variant}-f{args.folds}-b{int(args.budget_s)}-v{args.tta}-maps-s{args.seed}.npz"
                 if args.cache else None)
        if cache is not None and cache.exists():
            data = np.load(cache, allow_pickle=True)
            predictions, fold_stats = list(data["predictions"]), [dict(f) for f in data["folds"]]
            log(f"  out-of-fold predictions from {cache}")
        else:
            predictions, fold_stats = out_of_fold_predictions(items, corrupted, names, args, log)
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                np.savez(cache, predictions=np.array(predictions, dtype=object), folds=np.array(fold_stats, dtype=object))
        truths = [{"boxes": items[t][2], "labels": np.array([names.index(l) + 1 for l in truth[t]], np.int64)}
                  for t in range(len(items))]
        folds = [fold_of(tid, args.folds, args.seed) for tid, _, _ in items]
        classes = list(range(1, len(names) + 1))
        for stat in fold_stats:
            members = [t for t in range(len(items)) if folds[t] == stat["fold"]]
            stat["ap50"] = detection_ap([predictions[t] for t in members], [truths[t] for t in members], classes)["ap50"]
        ap50 = detection_ap(predictions, truths, classes)["ap50"]
        log(f"  out-of-fold AP50 vs the true boxes: {ap50:.3f} (folds: {[s['ap50'] for s in fold_stats]}; epochs "
            f"{[s['epochs'] for s in fold_stats]})")
        variants[variant] = {"errors": counts, "k": k, "ap50": ap50, "folds": fold_stats, "by_min_score": {}}
        for min_score in args.min_score:
            figures = evaluate(items, corrupted, predictions, names, errors, k, min_score, log)
            results[min_score].append((errors, figures))
            variants[variant]["by_min_score"][str(min_score)] = {
                key: value for key, value in figures.items() if key != "hits"} | (
                {"cleanlab": {key: v for key, v in figures["cleanlab"].items() if key != "hits"}}
                if "cleanlab" in figures else {})
    headline = args.min_score[0]
    line = overall([(e, f["hits"]) for e, f in results[headline]], "")
    have_cleanlab = all("cleanlab" in f for _, f in results[headline])
    line.update(overall([(e, f["cleanlab"]["hits"]) for e, f in results[headline]], "cleanlab_") if have_cleanlab
                else {"cleanlab_recall_at_2k": None})
    line["by_min_score"] = {}
    for min_score in args.min_score:
        row = overall([(e, f["hits"]) for e, f in results[min_score]], "")
        if have_cleanlab:
            row.update(overall([(e, f["cleanlab"]["hits"]) for e, f in results[min_score]], "cleanlab_"))
        line["by_min_score"][str(min_score)] = row
        log(f"predictions >= {min_score}: overall recall at 2k {row['recall_at_2k']:.3f} "
            f"({ {k: v for k, v in row.items() if k.startswith('recall_at_2k_')} }); cleanlab "
            f"{row.get('cleanlab_recall_at_2k')}")
    line.update({"n_injected": sum(len(e) for e, _ in results[headline]), "goal": 0.6, "min_score": headline,
                 "ap50": {v: s["ap50"] for v, s in variants.items()},
                 "epochs": {v: [f["epochs"] for f in s["folds"]] for v, s in variants.items()},
                 "folds": args.folds, "budget_s_per_fold": args.budget_s, "tta_views": args.tta, "seed": args.seed,
                 "device": args.device, "threads": torch.get_num_threads(),
                 "total_s": round(time.perf_counter() - started, 1), "variants": variants})
    log(f"headline (predictions >= {headline}): recall at 2k {line['recall_at_2k']} of {line['n_injected']} injected "
        f"errors (goal 0.6); cleanlab {line['cleanlab_recall_at_2k']}; {line['total_s']:.0f} s")
    print(json.dumps(line, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


if __name__ == "__main__":
    main()
