"""`sam3` pipeline speed: images per second through the real pipeline (prepare / forward / finish), random weights.

Random weights are fine for speed (every query is kept at `concept_threshold` 0, so the mask and NMS work is the
most a real model could cause). `--size tiny` (default on CPU): the test model (224-px ViT, 2 layers); `--size full`
(default on CUDA): facebook/sam3's architecture (1008-px ViT-L-sized encoder, 200 queries) with a small tokenizer.
`--model DIR_OR_HUB_ID` measures a real checkpoint instead. Photos from skimage at `--side` px, `--labels` label
prompts, masks for a Brush control (`--boxes-only` for a Rectangle-only config).

Usage: python bench/sam3.py [--device cpu|cuda] [--size tiny|full] [--images N] [--side PX] [--labels K]
Ends with one JSON line: images_per_s, seconds_per_image, first_call_s, images, side, labels, masks, size, device,
peak_gpu_mb (CUDA).
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from backend.adapters.base import LazyModel  # noqa: E402
from backend.adapters.sam3 import Sam3ConceptSegmenter  # noqa: E402
from backend.core.ontology import Control, Ontology  # noqa: E402
from backend.core.params import PredictParams  # noqa: E402
from backend.pipelines.sam3 import Sam3Pipeline  # noqa: E402
from bench.grounded import photos  # noqa: E402
from tests.tiny_models import WORDS, save_sam3  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", choices=("tiny", "full"))
    parser.add_argument("--model", help="a SAM 3 checkpoint (directory or hub id) instead of random weights")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--side", type=int, default=800)
    parser.add_argument("--labels", type=int, default=3)
    parser.add_argument("--boxes-only", action="store_true")
    args = parser.parse_args()
    size = args.size or ("full" if args.device.startswith("cuda") else "tiny")
    labels = tuple(WORDS[:args.labels])
    controls = [Control("box", "RectangleLabels", "image", "image", labels)]
    if not args.boxes_only:
        controls.append(Control("brush", "BrushLabels", "image", "image", labels))
    ontology = Ontology(tuple(controls))
    params = PredictParams(concept_threshold=0.0, max_regions=100)
    images = photos(args.images, args.side)
    with tempfile.TemporaryDirectory() as tmp:
        source = args.model or str(save_sam3(Path(tmp) / f"sam3-{size}", size=size))
        model = LazyModel("sam3", source, lambda: Sam3ConceptSegmenter(source, args.device))
        pipeline = Sam3Pipeline(model)
        model.get()
        started = time.perf_counter()
        pipeline.predict(images[:1], ontology, params)  # warm-up (kernels, allocator)
        first = time.perf_counter() - started
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        found = pipeline.predict(images, ontology, params)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
    regions = sum(len(d) for d in found)
    print(f"{len(images)} images of {args.side} px, {len(labels)} label prompts, {regions} regions: {seconds:.2f} s "
          f"({len(images) / seconds:.2f} images/s) on {args.device}, {size} model; first call {first:.2f} s")
    out = {"images_per_s": round(len(images) / seconds, 3), "seconds_per_image": round(seconds / len(images), 4),
           "first_call_s": round(first, 3), "images": len(images), "side": args.side, "labels": len(labels),
           "masks": not args.boxes_only, "size": "checkpoint" if args.model else size, "device": args.device}
    if args.device.startswith("cuda"):
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
