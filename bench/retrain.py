"""Retraining benchmark: train the specialised detector on part of the DeepForest sample data (aerial tree
crowns, MIT, shipped inside the `deepforest` wheel) as if they were corrected annotations; report AP50/AP on
held-out tiles, the training time, and what the held-out pre-labels would save annotators (`held_out_effort`: the
cost model of `backend.core.effort`, at the score cut a version would serve with, `backend.training.comparison`).

The recipe is the one `train` jobs use (`backend.training.recipe`: working scale and anchors fitted to the training
boxes, frozen backbone whose taps are cached, `backend.training.detector`); flags override parts of it.

Usage: python bench/retrain.py [--data DIR] [--budget-s S] [--epochs E] [--tta VIEWS] [--tta-scales 1|3]
       [--soft-nms SIGMA] [--box-loss smooth_l1|giou] [--proposals N] [--precision bf16|fp32] [--device cpu|cuda]
       [--fine-tune-s S] [--fine-tune-from BLOCK] [--fine-tune-lr LR]
       python bench/retrain.py --load DIR   (held-out figures of a detector saved with --save; no training)
The detector fuses the views it trained on (views of its backbone maps: 8 dihedral ones, 2 with --no-dihedral;
`--tta 1`: none); the figures without them are reported too.
DIR holds the wheel's deepforest/data files; without it the wheel is fetched with `pip download --no-deps`.
Ends with one JSON line: ap50, ap (with the views fused), ap50_without_tta (when more than one view is fused),
train_s, fine_tune (the second phase's first block, epochs and seconds; null with one phase: budgets under two
head phases, `training_phases`), n_train_images, n_heldout_images, autocast (bf16 autocast device or null), device,
and under "effort":
saving_pct (leave-one-out cut), saving_fitted_cut_pct, cut, actions, found_pct, saving_if_placed_pct,
saving_if_all_found_pct.
"""

import argparse
import hashlib
import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from backend.core.params import TrainParams  # noqa: E402
from backend.models.detector import DetectorSpec, build_detector, fit_anchor_sizes  # noqa: E402
from backend.models.detector_io import load_detector, predict, save_detector  # noqa: E402
from backend.models.precision import autocast_device  # noqa: E402
from backend.training.comparison import cross_fitted_seconds, cut_costs, fitted_cut  # noqa: E402
from backend.training.detector import TrainConfig, train_detector  # noqa: E402
from backend.core.effort import FAST, actions, manual_seconds, seconds  # noqa: E402
from backend.training.metrics import detection_ap  # noqa: E402
from backend.training.recipe import (FINE_TUNE_FROM, FINE_TUNE_LR, box_sides, cached_variants,  # noqa: E402
                                     fitted_spec, fused_scales, inference_fields, training_phases)

Image.MAX_IMAGE_PIXELS = None  # the sample crops are large, trusted files
TILE = 400


def sample_data(target: Path) -> Path:
    """The annotated images of the deepforest wheel, extracted to `target` (fetched once with pip)."""
    if list(target.glob("*.xml")):
        return target
    target.mkdir(parents=True, exist_ok=True)
    wheels = list(target.parent.glob("deepforest-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "deepforest", "-d",
                        str(target.parent)], check=True)
        wheels = list(target.parent.glob("deepforest-*.whl"))
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = [n for n in wheel.namelist() if n.startswith("deepforest/data/")]
        stems = {Path(n).stem for n in names if n.endswith(".xml")}
        for name in names:
            if Path(name).stem in stems and name.endswith((".xml", ".png")):
                (target / Path(name).name).write_bytes(wheel.read(name))
    return target


def voc_boxes(xml_path: Path) -> np.ndarray:
    boxes = []
    for obj in ET.parse(xml_path).getroot().iter("object"):
        box = obj.find("bndbox")
        boxes.append([float(box.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")])
    return np.array(boxes, np.float32).reshape(-1, 4)


def tiles(data: Path, tile: int = TILE):
    """(tile id, uint8 (tile, tile, 3) image, float32 (N, 4) boxes) for every full tile of every image with a box
    (a box is kept when at least half of it lies in the tile)."""
    for xml_path in sorted(data.glob("*.xml")):
        image = np.asarray(Image.open(xml_path.with_suffix(".png")).convert("RGB"))
        boxes = voc_boxes(xml_path)
        h, w = image.shape[:2]
        for y in range(0, h - tile + 1, tile):
            for x in range(0, w - tile + 1, tile):
                shifted = boxes - [x, y, x, y]
                clipped = shifted.clip(0, tile)
                area = np.prod(shifted[:, 2:] - shifted[:, :2], axis=1)
                kept = np.prod(clipped[:, 2:] - clipped[:, :2], axis=1)
                keep = (kept >= 0.5 * area) & ((clipped[:, 2:] - clipped[:, :2]) >= 4).all(axis=1)
                if keep.any():
                    yield f"{xml_path.stem}@{x},{y}", image[y:y + tile, x:x + tile].copy(), clipped[keep]


def held_out(tile_id: str) -> bool:
    return int(hashlib.sha256(tile_id.encode()).hexdigest()[:8], 16) / 2**32 < 0.25


def run(train: list, test: list, device: str, spec: DetectorSpec, config: TrainConfig,
        groups: list[str] | None = None, save: Path | None = None) -> dict:
    """Train on `train` [(image, boxes, labels)], evaluate on `test` [(image, boxes)] (`evaluate`); its figures +
    timings."""
    model = build_detector(spec)
    stats = train_detector(model, train, device, config)
    result = evaluate(model, test, device, groups)
    if save is not None:  # the serving checkpoint format: `backend.training.project_detector.load_detector` reads it
        save_detector(save, model, ["tree"], {"ap50": result["ap50"], "ap": result["ap"]})
    return {**result, "train_s": stats["train_s"], "epochs": stats["epochs"], "fine_tune": stats.get("fine_tune")}


def evaluate(model, test: list, device: str, groups: list[str] | None = None) -> dict:
    """Held-out figures of a trained detector (fusing the views its spec names) on `test` [(image, boxes)]: AP50 / AP
    (and without test-time views), inference time, AP50 per group of test items (e.g. per source image, when `groups`
    names one per item), what its pre-labels would save (`held_out_effort`)."""
    spec = model.spec
    truths = [{"boxes": boxes, "labels": np.ones(len(boxes), np.int64)} for _, boxes in test]
    plain = {}
    if spec.tta_views > 1 or spec.tta_scales:  # the same weights without test-time augmentation, for comparison
        model.spec = replace(spec, tta_views=1, tta_scales=())
        plain = detection_ap(predict(model, [img for img, _ in test], device), truths, classes=[1])
        model.spec = spec
    start = time.perf_counter()
    predictions = predict(model, [img for img, _ in test], device)
    infer_s = time.perf_counter() - start
    metrics = detection_ap(predictions, truths, classes=[1])
    by_group = {}
    for group in sorted(set(groups or ())):
        members = [i for i, g in enumerate(groups) if g == group]
        by_group[group] = detection_ap([predictions[i] for i in members], [truths[i] for i in members], [1])["ap50"]
    without_tta = {"ap50_without_tta": plain["ap50"], "ap_without_tta": plain["ap"]} if plain else {}
    return {"ap50": metrics["ap50"], "ap": metrics["ap"], "tta_views": spec.tta_views, **without_tta,
            "infer_ms_per_image": round(infer_s / max(len(test), 1) * 1000, 1), "ap50_by_image": by_group,
            "effort": held_out_effort(predictions, truths)}


def held_out_effort(predictions: list[dict], truths: list[dict]) -> dict:
    """What correcting the held-out pre-labels (class 1) into the truths would cost annotators, as a share of drawing
    every box saved (`backend.core.effort`, fast drawing: the model a version's cut is fitted with):
    saving_pct: each tile served at the cut fitted on the other tiles (leave one out: the honest figure);
    saving_fitted_cut_pct, cut: at the one cut fitted on all of them (the cut a version serves with);
    actions: the corrections at that cut; found_pct: truths matched by a pre-labelled box (IoU >= 0.3);
    saving_if_placed_pct: the same boxes, every matched one placed well enough to accept (an upper bound of what
    better localisation alone could give: what is missed stays missed);
    saving_if_all_found_pct: every truth found, placed as the found ones are (the same share accepted, the rest
    adjusted), nothing to delete (an upper bound of what better recall and precision alone could give)."""
    model = FAST
    costs = cut_costs(predictions, truths, 1, model)
    manual = sum(manual_seconds(len(t["boxes"]), model) for t in truths)
    cut = fitted_cut(costs)
    counts: dict[str, int] = {}
    for p, t in zip(predictions, truths):
        shown = p["boxes"][(p["labels"] == 1) & (p["scores"] >= cut)]
        for key, n in actions(shown, [1] * len(shown), t["boxes"], [1] * len(t["boxes"])).items():
            counts[key] = counts.get(key, 0) + n
    placed = {**counts, "accept": counts["accept"] + counts["adjust"], "adjust": 0}
    matched = counts["accept"] + counts["adjust"]
    n_true = matched + counts["draw"]
    accepted = round(n_true * counts["accept"] / matched) if matched else 0
    all_found = {**dict.fromkeys(counts, 0), "accept": accepted, "adjust": n_true - accepted} if matched else counts

    def saving(cost: float) -> float:
        return round(100 * (1 - cost / manual), 1) if manual else 0.0
    return {"saving_pct": saving(cross_fitted_seconds(costs)), "saving_fitted_cut_pct": saving(seconds(counts, model)),
            "cut": cut, "actions": counts, "found_pct": round(100 * matched / max(1, matched + counts["draw"]), 1),
            "saving_if_placed_pct": saving(seconds(placed, model)),
            "saving_if_all_found_pct": saving(seconds(all_found, model)), "cost_model": model.name}


def split(data: Path) -> tuple[list, list, list[str]]:
    """(train items, held-out items, source image of each held-out item)."""
    all_tiles = list(tiles(sample_data(data)))
    train = [(img, boxes, np.ones(len(boxes), np.int64)) for tid, img, boxes in all_tiles if not held_out(tid)]
    test = [(img, boxes) for tid, img, boxes in all_tiles if held_out(tid)]
    return train, test, [tid.split("@")[0] for tid, _, _ in all_tiles if held_out(tid)]


def report(result: dict, spec: DetectorSpec) -> None:
    effort = result["effort"]
    print(f"held-out AP50 {result['ap50']:.3f}, AP {result['ap']:.3f} ({spec.tta_views} views; without test-time "
          f"augmentation {result.get('ap50_without_tta', result['ap50']):.3f}); inference "
          f"{result['infer_ms_per_image']} ms/tile; AP50 per source image {result['ap50_by_image']}")
    print(f"annotation time saved on the held-out tiles ({effort['cost_model']}): {effort['saving_pct']} % "
          f"(cut left-one-out), {effort['saving_fitted_cut_pct']} % at cut {effort['cut']}; {effort['found_pct']} % "
          f"of the trees found; corrections {effort['actions']}; every found tree placed well enough to accept: "
          f"{effort['saving_if_placed_pct']} %; every tree found, placed as now, no false box: "
          f"{effort['saving_if_all_found_pct']} %")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parent / ".cache" / "deepforest-data")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--epochs", type=int, default=200, help="at most; the time budget usually ends it first")
    parser.add_argument("--image-size", type=int, default=TrainParams.image_size,
                        help="train_image_size: the largest working scale the recipe may pick (px)")
    parser.add_argument("--min-size", type=int, default=None, help="override the fitted working scale (px)")
    parser.add_argument("--stride4", action="store_true", help="add the stride-4 FPN level (recipe before 2026-12)")
    parser.add_argument("--default-anchors", action="store_true", help="fixed anchor sizes instead of fitted ones")
    parser.add_argument("--tta", type=int, default=0, help="dihedral views fused at inference (1, 2, 4, 8; "
                        "0: the recipe's, those it trained on)")
    parser.add_argument("--tta-scales", type=int, default=TrainParams.tta_scales, choices=(0, 1, 3),
                        help="3: also fuse the views at the training scales (0.75 and 1.25 x); 0: 3 with 8 views, "
                             "else 1; with --load too")
    parser.add_argument("--soft-nms", type=float, default=None,
                        help="Gaussian soft-NMS sigma of the final detections (0: off; default: the recipe's, or the "
                             "loaded detector's); with --load too")
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument("--frozen-blocks", type=int, default=None,
                        help="stem + this many backbone blocks keep ImageNet weights (recipe: 16, all; taps cached)")
    parser.add_argument("--roi-batch", type=int, default=None)
    parser.add_argument("--roi-positive", type=float, default=None,
                        help="largest share of positive RoIs the box head learns from (default: the recipe's)")
    parser.add_argument("--box-loss", choices=("smooth_l1", "giou"), default=None,
                        help="the box head's regression loss (default: the recipe's)")
    parser.add_argument("--proposals", type=int, default=None,
                        help="RPN proposals per view and scale at inference (default: the recipe's)")
    parser.add_argument("--precision", choices=("bf16", "fp32"), default=None,
                        help="inference precision (default: the recipe's, bf16 where the CPU has it natively)")
    parser.add_argument("--no-dihedral", action="store_true", help="horizontal flips only")
    parser.add_argument("--lr", type=float, default=TrainConfig.lr)
    parser.add_argument("--weight-decay", type=float, default=TrainConfig.weight_decay)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--colour-jitter", type=float, default=TrainConfig.colour_jitter)
    parser.add_argument("--cached-variants", type=int, default=None,
                        help="the tile and its jittered copies whose cached taps training draws from (1: the tile "
                             "alone; default: the recipe's, `cached_variants`)")
    parser.add_argument("--fine-tune-s", type=float, default=None,
                        help="seconds of the budget for the second phase that fine-tunes the backbone's last blocks, "
                             "the head phase the rest (0: none; default: the recipe's, `training_phases`)")
    parser.add_argument("--fine-tune-from", type=int, default=FINE_TUNE_FROM,
                        help="the first backbone block that phase trains")
    parser.add_argument("--fine-tune-lr", type=float, default=FINE_TUNE_LR, help="that phase's peak learning rate")
    parser.add_argument("--no-cpu-bf16", action="store_true", help="train in float32 on a CPU with bf16 support")
    parser.add_argument("--save", type=Path, default=None, help="directory to save the trained detector.pt in")
    parser.add_argument("--budget-s", type=float, default=None, help="training time budget (default 240 GPU, 1800 CPU)")
    parser.add_argument("--load", type=Path, default=None, help="evaluate the detector saved in this directory "
                        "(--save) on the held-out tiles instead of training one")
    args = parser.parse_args()
    train, test, sources = split(args.data)
    if args.load is not None:  # inference as the recipe would serve it now, unless flags say otherwise
        model, _ = load_detector(args.load, args.device)
        scales = fused_scales(TrainParams(tta_scales=args.tta_scales, tta_views=model.spec.tta_views))
        model.spec = replace(model.spec, **inference_fields(model.spec.train_sizes, scales))
        model.spec = replace(model.spec, test_proposals=args.proposals or model.spec.test_proposals,
                             bf16_inference=args.precision != "fp32")
        if args.soft_nms is not None:
            model.spec = replace(model.spec, soft_nms_sigma=args.soft_nms)
        result = evaluate(model, test, args.device, sources)
        report(result, model.spec)
        print(json.dumps({**result, "loaded": str(args.load), "n_heldout_images": len(test),
                          "spec": model.spec.as_dict(), "device": args.device}))
        return
    print(f"{len(train) + len(test)} tiles of {TILE} px: {len(train)} train ({sum(len(b) for _, b, _ in train)} "
          f"boxes), {len(test)} held-out ({sum(len(b) for _, b in test)} boxes)")
    # the project recipe (`backend.training.recipe`): scale and anchors fitted to the training tiles, frozen backbone
    spec = fitted_spec([img for img, _, _ in train], [b for _, b, _ in train], 1,
                       TrainParams(image_size=args.image_size, tta_views=args.tta, tta_scales=args.tta_scales,
                                   augment="flip" if args.no_dihedral else "dihedral"))
    overrides = {"stride4": True} if args.stride4 else {}
    if args.min_size:  # another scale: anchors refitted to the boxes at it
        sides = np.concatenate([box_sides(b) * args.min_size / min(img.shape[:2]) for img, b, _ in train])
        overrides |= {"min_size": args.min_size, "train_sizes": (int(args.min_size * .75), int(args.min_size * 1.25)),
                      "anchor_sizes": fit_anchor_sizes(sides, levels=3)}
    if args.default_anchors or args.stride4:
        overrides["anchor_sizes"] = ()
    overrides |= {k: v for k, v in (("frozen_blocks", args.frozen_blocks), ("roi_batch", args.roi_batch),
                                    ("soft_nms_sigma", args.soft_nms),
                                    ("roi_positive_fraction", args.roi_positive),
                                    ("box_loss", args.box_loss), ("test_proposals", args.proposals))
                  if v is not None}
    if args.precision is not None:
        overrides["bf16_inference"] = args.precision == "bf16"
    spec = replace(spec, **overrides)
    config = TrainConfig(epochs=args.epochs, lr=args.lr, dihedral=not args.no_dihedral, batch_size=args.batch_size,
                         colour_jitter=args.colour_jitter, cpu_bf16=not args.no_cpu_bf16,
                         time_budget_s=args.budget_s or (240 if args.device == "cuda" else 1800), seed=args.seed,
                         weight_decay=args.weight_decay)
    budget = config.time_budget_s
    head_s, fine_tune_s = training_phases(len(train), budget, args.epochs)
    if args.fine_tune_s is not None:  # the whole budget, split as asked
        if not 0 <= args.fine_tune_s < budget:
            parser.error(f"--fine-tune-s must be at least 0 and less than the budget ({budget} s)")
        head_s, fine_tune_s = budget - args.fine_tune_s, args.fine_tune_s
    config = replace(config, time_budget_s=head_s + fine_tune_s,
                     cached_variants=args.cached_variants or cached_variants(len(train), head_s, args.epochs),
                     fine_tune_s=fine_tune_s, fine_tune_from=args.fine_tune_from, fine_tune_lr=args.fine_tune_lr)
    result = run(train, test, args.device, spec, config, sources, args.save)
    print(f"trained {result['epochs']} epochs in {result['train_s']} s")
    report(result, spec)
    print(json.dumps({**result, "n_train_images": len(train), "n_heldout_images": len(test),
                      "n_train_boxes": int(sum(len(b) for _, b, _ in train)), "spec": spec.as_dict(),
                      "dihedral": config.dihedral, "lr": config.lr, "batch_size": config.batch_size,
                      "colour_jitter": config.colour_jitter, "cached_variants": config.cached_variants,
                      "fine_tune_s": config.fine_tune_s if result["fine_tune"] else 0.0,
                      "fine_tune_lr": config.fine_tune_lr,
                      "seed": config.seed,
                      "autocast": autocast_device(args.device, config.cpu_bf16),
                      "device": args.device,
                      "device_name": torch.cuda.get_device_name() if args.device == "cuda" else "cpu"}))


if __name__ == "__main__":
    main()
