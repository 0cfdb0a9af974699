"""What one pre-label costs with the offline default: the LIME pipeline at its default parameters (256 samples, 80
superpixels, 3×3 windows) on real photos, with the default review score (`mirror`: a second pass on the mirrored
image) and with `review_score: "confidence"` (no second pass), through the same code as `/predict` and predict
jobs (`ReviewScorer.run`, chunks of 8, the process's device gate).

Usage: python bench/prelabel_speed.py [--images 8] [--side 640] [--device cpu]
Ends with one JSON line: seconds_per_image_mirror, seconds_per_image_confidence, images, side, device, threads.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from backend.adapters.base import LazyModel  # noqa: E402
from backend.adapters.classifier import build_classifier  # noqa: E402
from backend.core.device import PREDICT, DeviceGate  # noqa: E402
from backend.core.params import PredictParams  # noqa: E402
from backend.labelstudio.config import parse_label_config  # noqa: E402
from backend.pipelines.lime_boxes import LimeBoxesPipeline  # noqa: E402
from backend.predictions.priority import ReviewScorer  # noqa: E402

CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
          '<Label value="cat"/><Label value="cup"/><Label value="person"/></RectangleLabels></View>')
PHOTOS = (data.chelsea(), data.coffee(), data.astronaut(), data.rocket(), data.cat())


class Selector:
    """The part of `PipelineSelector` that `ReviewScorer.run` uses: run the pipeline under the device gate."""

    def __init__(self, device: str):
        self.gate = DeviceGate(device)

    def run(self, pipeline, images, ontology, params, priority):
        from backend.pipelines.base import run_pipeline

        return pipeline, run_pipeline(pipeline, images, ontology, params, self.gate, priority)


def photos(count: int, side: int) -> list[np.ndarray]:
    out = []
    for i in range(count):
        image = Image.fromarray(PHOTOS[i % len(PHOTOS)])
        image.thumbnail((side, side))
        out.append(np.asarray(image))
    return out


def seconds_per_image(pipeline, images, ontology, params, mode: str, device: str) -> float:
    scorer, selector = ReviewScorer(mode), Selector(device)
    scorer.run(selector, pipeline, images[:1], ontology, params, PREDICT)  # warm-up (ONNX session, threads)
    started = time.perf_counter()
    for start in range(0, len(images), 8):
        scorer.run(selector, pipeline, images[start:start + 8], ontology, params, PREDICT)
    return (time.perf_counter() - started) / len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--side", type=int, default=640)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    onnx_dir = Path(__import__("tempfile").mkdtemp(prefix="onnx-"))
    classifier = LazyModel("classifier", "efficientnet-lite0",
                           lambda: build_classifier("efficientnet-lite0", args.device, onnx_dir))
    pipeline = LimeBoxesPipeline(classifier)
    params = PredictParams()
    ontology = parse_label_config(CONFIG, params)
    images = photos(args.images, args.side)
    mirror = seconds_per_image(pipeline, images, ontology, params, "mirror", args.device)
    confidence = seconds_per_image(pipeline, images, ontology, params, "confidence", args.device)
    print(f"LIME defaults ({params.num_samples} samples, {params.superpixels} superpixels, {params.lime_windows}x"
          f"{params.lime_windows} windows), {args.images} photos of {args.side} px on {args.device} "
          f"({torch.get_num_threads()} threads): {mirror:.2f} s per image with the mirror score (default), "
          f"{confidence:.2f} s with review_score=confidence")
    print(json.dumps({"seconds_per_image_mirror": round(mirror, 3), "seconds_per_image_confidence":
                      round(confidence, 3), "images": args.images, "side": args.side, "device": args.device,
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
