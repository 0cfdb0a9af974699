"""LIME boxes: our batched pipeline against the `lime` package (same classifier, superpixels and num_samples).

The `lime` package perturbs (its own sampler, mean-colour fill at full size) and classifies through a user-style
`classifier_fn` (also the windows); its recorded masks and predictions go through our box rule, as ours do, so
the box IoU measures how closely our batched perturbation and classification reproduce lime's.

Usage: python bench/lime_boxes.py [--samples N] [--images K] [--device cpu|cuda]
Prints per-image lines, then one JSON line with images_per_s, lime_images_per_s, speedup,
mean_box_iou_vs_lime, device.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from backend.adapters.base import LazyModel  # noqa: E402
from backend.adapters.classifier import build_classifier  # noqa: E402
from backend.core.params import PredictParams  # noqa: E402
from backend.core.ontology import Control, Ontology  # noqa: E402
from backend.pipelines.label_mapping import class_groups  # noqa: E402
from backend.pipelines.lime_boxes import LimeBoxesPipeline  # noqa: E402
from backend.pipelines.lime_explain import superpixels  # noqa: E402
from tests.lime_reference import lime_package_detections, mean_matched_iou  # noqa: E402

# The ontology of `<RectangleLabels name="box" toName="image">` with labels cat and cup (built directly,
# so the benchmark needs no label-studio-sdk on the GPU machine).
ONTOLOGY = Ontology((Control("box", "RectangleLabels", "image", "image", ("cat", "cup")),))


def bench_images(count: int) -> list[np.ndarray]:
    """Real photos (skimage) and composites of them: single objects and two objects per image."""
    cat, coffee = data.chelsea(), data.coffee()
    both = np.full((700, 1000, 3), 255, np.uint8)
    both[0:300, 0:451] = cat
    both[300:700, 470:1000] = coffee[:400, 50:580]
    two_cats = np.full((320, 940, 3), 255, np.uint8)
    two_cats[10:310, 10:461] = cat
    two_cats[10:310, 480:931] = cat[:, ::-1]
    base = [cat, coffee, both, two_cats]
    return [base[i % len(base)] for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=PredictParams().num_samples)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--input-size", type=int, default=224, help="our perturbation size (lime_input_size)")
    parser.add_argument("--lime-images", type=int, default=None, help="images for the (slow) lime package run")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    params = PredictParams(num_samples=args.samples, lime_input_size=args.input_size)
    ontology = ONTOLOGY
    onnx_dir = Path(tempfile.mkdtemp())
    classifier = build_classifier("efficientnet-lite0", args.device, onnx_dir)
    # The lime package gets the classifier as a user would write it: eager PyTorch.
    reference_classifier = build_classifier("efficientnet-lite0", args.device)
    pipeline = LimeBoxesPipeline(LazyModel("classifier", "efficientnet-lite0", lambda: classifier))
    images = bench_images(args.images)
    pipeline.predict(images[:4], ontology, params)  # warm-up (cuDNN picks kernels for these batch shapes)
    if args.device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    ours = pipeline.predict(images, ontology, params)
    if args.device == "cuda":
        torch.cuda.synchronize()
    ours_s = time.perf_counter() - start

    groups = class_groups(ontology.labels, classifier.class_names)
    n_lime = args.lime_images or len(images)
    ious, lime_s = [], 0.0
    for i, image in enumerate(images[:n_lime]):
        segments = superpixels(image, params.superpixels)
        start = time.perf_counter()
        reference = lime_package_detections(reference_classifier, image, segments, groups, params, seed=0)
        lime_s += time.perf_counter() - start
        ious.append(mean_matched_iou(ours[i], reference))
        print(f"image {i} {image.shape[1]}x{image.shape[0]}: ours {list(ours[i].labels)} "
              f"{ours[i].xyxy.round().tolist()} | lime {list(reference.labels)} {reference.xyxy.round().tolist()} "
              f"| IoU {ious[-1]:.2f}")
    images_per_s = len(images) / ours_s
    lime_images_per_s = n_lime / lime_s
    print(json.dumps({
        "images_per_s": round(images_per_s, 3), "lime_images_per_s": round(lime_images_per_s, 3),
        "speedup": round(images_per_s / lime_images_per_s, 2), "mean_box_iou_vs_lime": round(float(np.mean(ious)), 3),
        "num_samples": args.samples, "input_size": args.input_size, "images": len(images), "device": args.device,
        "device_name": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "engine": classifier.engine, "reference_engine": reference_classifier.engine,
    }))


if __name__ == "__main__":
    main()
