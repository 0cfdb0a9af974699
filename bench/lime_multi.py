"""LIME boxes on busy images: before (the previous algorithm) and after (the current pipeline).

Usage: python bench/lime_multi.py [--two N] [--many N] [--seed S] [--samples N] [--device cpu|cuda]

Images (tests/lime_scenes.py): composites of 2 and of 3-4 labelled objects (crops of real photos that the object
fills: a cat, a cup, a motorcycle, a tripod) pasted at random sizes and places on real backgrounds, the four
whole photos and each object alone on a background (single objects), and six photos of objects whose labels are
not in the config (every box there is a false positive). The default seed (100) draws composites that were not
used while the algorithm was tuned (seeds 0-2 and 10-12 were).

"before" is the algorithm this replaced, kept here as the baseline: SLIC with 40 requested superpixels, LIME's
probability ridge, a label explained only if its whole-image probability reaches `class_threshold`, the top 10
superpixels above 0.25 x the top weight boxed per connected group. "after" is `LimeBoxesPipeline` with its
defaults. Same classifier and `num_samples`; both run in this process, image by image, in alternating order,
so CPU contention from other work hits both alike.

Prints per-image lines and per-set recall / precision at IoU 0.5 (greedy matching by score, same label), AP50
and the probability that a true box outscores a false one; ends with one JSON line.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage.segmentation import slic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from backend.adapters.base import LazyModel  # noqa: E402
from backend.adapters.classifier import build_classifier  # noqa: E402
from backend.core.detections import Detections, box_iou, class_aware_nms  # noqa: E402
from backend.core.ontology import Control, Ontology  # noqa: E402
from backend.core.params import PredictParams  # noqa: E402
from backend.pipelines.label_mapping import class_groups  # noqa: E402
from backend.pipelines.lime_boxes import LimeBoxesPipeline  # noqa: E402
from backend.pipelines.lime_explain import KERNEL_WIDTH, RIDGE_ALPHA, explain  # noqa: E402
from tests.lime_scenes import (CLASS_NAMES, LABELS, Scene, many_object_scenes, negative_scenes,  # noqa: E402
                               single_object_scenes, two_object_scenes)

ONTOLOGY = Ontology((Control("box", "RectangleLabels", "image", "image", LABELS),), class_names=CLASS_NAMES)
# the previous defaults of the LIME parameters (the "before" algorithm)
BEFORE = dict(superpixels=40, class_threshold=0.15, lime_min_weight=0.25, lime_max_superpixels=10,
              lime_min_component=0.3)


# ---- before: the previous algorithm, verbatim apart from names ----------------------------------------------

def before_superpixels(image: np.ndarray, n_segments: int, max_side: int = 256) -> np.ndarray:
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = image
    if scale < 1.0:
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        small = F.interpolate(tensor, size=size, mode="bilinear", antialias=True, align_corners=False)
        small = small[0].permute(1, 2, 0).clamp(0, 255).byte().numpy()
    segments = slic(small, n_segments=n_segments, compactness=10, start_label=0, channel_axis=-1)
    _, segments = np.unique(segments, return_inverse=True)
    return segments.reshape(small.shape[:2]).astype(np.int32)


def before_ridge_weights(z: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    z, y = z.double(), targets.double()
    ref = z[0:1]
    cos = (z @ ref.T).squeeze(1) / (z.norm(dim=1) * ref.norm()).clamp(min=1e-12)
    w = torch.sqrt(torch.exp(-((1.0 - cos) ** 2) / KERNEL_WIDTH ** 2))
    z_mean = (w[:, None] * z).sum(0) / w.sum()
    y_mean = (w[:, None] * y).sum(0) / w.sum()
    zc, yc = z - z_mean, y - y_mean
    gram = zc.T @ (w[:, None] * zc) + RIDGE_ALPHA * torch.eye(z.shape[1], dtype=z.dtype)
    return torch.linalg.solve(gram, zc.T @ (w[:, None] * yc)).T


def before_select(weights: np.ndarray, min_weight: float, max_superpixels: int) -> np.ndarray:
    top = float(weights.max()) if weights.size else 0.0
    if top <= 0:
        return np.zeros(0, dtype=int)
    order = np.argsort(-weights, kind="stable")
    order = order[(weights[order] > 0) & (weights[order] > min_weight * top)]
    return order[:max_superpixels]


def before_components(selected: np.ndarray, segments: np.ndarray, weights: np.ndarray, image_size):
    h, w = segments.shape
    radius = max(1, int(round(0.25 * np.sqrt(h * w / max(int(segments.max()) + 1, 1)))))
    dilated = cv2.dilate(selected.astype(np.uint8), np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)) > 0
    grouped, count = ndimage.label(dilated, np.ones((3, 3), bool))
    sx, sy = image_size[0] / w, image_size[1] / h
    out = []
    for k in range(1, count + 1):
        ys, xs = np.nonzero(selected & (grouped == k))
        if xs.size:
            xyxy = np.array([xs.min() * sx, ys.min() * sy, (xs.max() + 1) * sx, (ys.max() + 1) * sy], np.float32)
            out.append((xyxy, float(weights[np.unique(segments[selected & (grouped == k)])].sum())))
    return out


def before_detections(expl, labels, image_size, params: PredictParams) -> Detections:
    weights = before_ridge_weights(torch.from_numpy(expl.samples).float(),
                                   torch.from_numpy(expl.sample_probabilities)).numpy()
    boxes, scores, names = [], [], []
    for j, label in enumerate(labels):
        prob = float(expl.probabilities[j])
        if prob < params.class_threshold:
            continue
        kept = before_select(weights[j], params.lime_min_weight, params.lime_max_superpixels)
        if kept.size == 0:
            continue
        parts = before_components(np.isin(expl.segments, kept), expl.segments, weights[j], image_size)
        strongest = max(s for _, s in parts)
        for xyxy, strength in parts:
            if strength >= params.lime_min_component * strongest:
                boxes.append(xyxy)
                scores.append(prob * max(strength, 0.0) / strongest)
                names.append(label)
    if not boxes:
        return Detections.empty(image_size)
    return Detections(np.stack(boxes), np.array(scores), names, image_size)


def before_predict(pipeline: LimeBoxesPipeline, images, ontology, params: PredictParams) -> list[Detections]:
    """The previous `LimeBoxesPipeline.predict`: same flow, previous superpixels and box rule, no windows."""
    classifier = pipeline.classifier.get()
    groups = class_groups(ontology.labels, classifier.class_names, ontology.class_names)
    labels = list(groups)
    segments = [pipeline._segmenter.submit(before_superpixels, image, params.superpixels) for image in images]
    explanations = explain(classifier, images, (f.result() for f in segments), [groups[label] for label in labels],
                           params.num_samples, params.lime_input_size, windows_per_side=1)
    return [class_aware_nms(before_detections(expl, labels, (image.shape[1], image.shape[0]), params),
                            params.nms_iou, params.max_regions)
            for image, expl in zip(images, explanations)]


# ---- evaluation ----------------------------------------------------------------------------------------------

def match(dets: Detections, scene: Scene, iou_threshold: float = 0.5) -> list[tuple[float, bool]]:
    """(score, true positive?) per detection: greedy by score, same label, IoU >= `iou_threshold`."""
    used = np.zeros(len(scene.labels), bool)
    out = []
    for i in np.argsort(-dets.scores, kind="stable"):
        iou = box_iou(dets.xyxy[i:i + 1], scene.boxes)[0] if len(scene.labels) else np.zeros(0)
        iou = np.where((np.array(scene.labels) == dets.labels[i]) & ~used, iou, 0.0)
        hit = bool(iou.size and iou.max() >= iou_threshold)
        if hit:
            used[int(iou.argmax())] = True
        out.append((float(dets.scores[i]), hit))
    return out


def summarise(results: list[tuple[str, Scene, Detections]]) -> dict:
    sets: dict[str, list[int]] = {}
    matched = []
    for group, scene, dets in results:
        m = match(dets, scene)
        matched += m
        counts = sets.setdefault(group, [0, 0, 0])
        counts[0] += sum(hit for _, hit in m)
        counts[1] += len(m)
        counts[2] += len(scene.labels)
    out = {}
    for group, (tp, predicted, truth) in sets.items():
        if truth:
            out[f"recall_{group}"] = round(tp / truth, 3)
            out[f"precision_{group}"] = round(tp / max(predicted, 1), 3)
        else:
            out[f"boxes_{group}"] = predicted
    matched.sort(key=lambda x: -x[0])
    hits = np.array([hit for _, hit in matched], bool)
    truth = sum(len(scene.labels) for _, scene, _ in results)
    tp, fp = np.cumsum(hits), np.cumsum(~hits)
    precision, recall = tp / np.maximum(tp + fp, 1), tp / max(truth, 1)
    out["ap50"] = round(float(np.mean([precision[recall >= r].max() if (recall >= r).any() else 0.0
                                       for r in np.linspace(0, 1, 101)])), 3)
    true_scores = np.array([s for s, hit in matched if hit])
    false_scores = np.array([s for s, hit in matched if not hit])
    if true_scores.size and false_scores.size:  # P(a true box outscores a false one), ties count half
        diff = true_scores[:, None] - false_scores[None, :]
        out["score_auc"] = round(float((diff > 0).mean() + 0.5 * (diff == 0).mean()), 3)
    return out


def describe(scene: Scene, dets: Detections) -> str:
    m = dict(zip(np.argsort(-dets.scores, kind="stable").tolist(), match(dets, scene)))
    found = [f"{dets.labels[i]} {dets.scores[i]:.2f} {'TP' if m[i][1] else 'FP'}" for i in range(len(dets))]
    return f"[{', '.join(found)}]"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--two", type=int, default=20, help="composites of two objects")
    parser.add_argument("--many", type=int, default=8, help="composites of three or four objects")
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--samples", type=int, default=PredictParams().num_samples)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    scenes = ([("2obj", s) for s in two_object_scenes(args.two, args.seed)]
              + [("many", s) for s in many_object_scenes(args.many, args.seed + 1)]
              + [("single", s) for s in single_object_scenes(args.seed + 2)]
              + [("negative", s) for s in negative_scenes()])
    after_params = PredictParams(num_samples=args.samples)
    before_params = PredictParams(num_samples=args.samples, **BEFORE)
    classifier = build_classifier("efficientnet-lite0", args.device, Path(tempfile.mkdtemp()))
    pipeline = LimeBoxesPipeline(LazyModel("classifier", "efficientnet-lite0", lambda: classifier))
    runs = {"before": lambda im: before_predict(pipeline, [im], ONTOLOGY, before_params)[0],
            "after": lambda im: pipeline.predict([im], ONTOLOGY, after_params)[0]}
    for run in runs.values():  # warm-up
        run(scenes[0][1].image)
    seconds = {name: 0.0 for name in runs}
    results = {name: [] for name in runs}
    for i, (group, scene) in enumerate(scenes):
        order = list(runs) if i % 2 == 0 else list(runs)[::-1]
        for name in order:
            if args.device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            dets = runs[name](scene.image)
            if args.device == "cuda":
                torch.cuda.synchronize()
            seconds[name] += time.perf_counter() - start
            results[name].append((group, scene, dets))
        print(f"{scene.name:18s} truth {list(scene.labels)} | before {describe(scene, results['before'][-1][2])} "
              f"| after {describe(scene, results['after'][-1][2])}", flush=True)

    summary = {name: summarise(results[name]) for name in runs}
    for name in runs:
        print(name, summary[name], f"{len(scenes) / seconds[name]:.3f} images/s")
    speed = {name: len(scenes) / seconds[name] for name in runs}
    after, before = summary["after"], summary["before"]
    line = {key: after[key] for key in ("recall_2obj", "precision_2obj", "recall_single", "precision_single")}
    line["speed_ratio"] = round(speed["after"] / speed["before"], 3)
    line.update({key: after[key] for key in after if key not in line})
    line.update({f"{key}_before": value for key, value in before.items()})
    line.update({"images_per_s": round(speed["after"], 3), "images_per_s_before": round(speed["before"], 3),
                 "images": len(scenes), "num_samples": args.samples, "seed": args.seed, "device": args.device,
                 "engine": classifier.engine})
    print(json.dumps(line))


if __name__ == "__main__":
    main()
