"""SAM 2 video box-propagation benchmark: frames/s and peak memory of `VideoObjectTracker.propagate` over a long
synthetic clip (squares moving over a noisy background, generated one frame at a time).

The model is a random-init SAM 2 video built in a temp dir (`--size tiny`, the unit-test model, or `--size full`, the
architecture of facebook/sam2.1-hiera-tiny), or `--model PATH_OR_HUB_ID` for real weights. Random weights track
nothing, but they cost what real ones cost, and memory must stay flat however long the clip: RSS is sampled every
100 frames (through the `stop` callback) and printed, so growth shows.

Usage: python bench/propagation.py [--frames 1000] [--side 256] [--size tiny|full] [--model ID] [--objects 2]
       [--device auto|cpu|cuda] [--threads N]
Ends with one JSON line: frames, frames_per_s, peak_rss_mb, model, size, device, side, objects, plus rss_mb_at
(RSS every 100 frames), threads, load_s, tracked_frames and, on CUDA, peak_cuda_mb and gpu.
"""

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from backend.adapters.sam2_video import BoxSeed, VideoObjectTracker  # noqa: E402
from tests.tiny_video_models import save_sam2_video  # noqa: E402


def square_box(obj: int, frame: int, side: int) -> np.ndarray:
    """float32 (4,) xyxy of object `obj`'s square at `frame`: a side/5 square bouncing along its own row."""
    size = side // 5
    span = side - size
    x = (obj * 37 + 2 * frame) % (2 * span)
    x = x if x < span else 2 * span - x
    y = (obj * side // 3 + size // 2) % (side - size)
    return np.array([x, y, x + size, y + size], np.float32)


def synthetic_clip(frames: int, side: int, objects: int, seed: int = 0):
    """`frames` uint8 (side, side, 3) frames, generated lazily: coloured squares over noise."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(120, 256, (objects, 3), dtype=np.uint8)
    for i in range(frames):
        frame = rng.integers(0, 90, (side, side, 3), dtype=np.uint8)
        for obj in range(objects):
            x0, y0, x1, y1 = square_box(obj, i, side).astype(int)
            frame[y0:y1, x0:x1] = colours[obj]
        yield frame


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--side", type=int, default=256, help="frame width and height in pixels")
    parser.add_argument("--size", choices=["tiny", "full"], default="tiny", help="random-init model to build")
    parser.add_argument("--model", default=None, help="a save_pretrained dir or hub id instead of a random model")
    parser.add_argument("--objects", type=int, default=2, help="seeds; object k is seeded on frame 3k")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device

    with tempfile.TemporaryDirectory() as tmp:
        source = args.model or str(save_sam2_video(Path(tmp) / "sam2_video", size=args.size))
        started = time.perf_counter()
        tracker = VideoObjectTracker(source, device)
        load_s = time.perf_counter() - started
    seeds = [BoxSeed(k + 1, 3 * k, square_box(k, 3 * k, args.side)) for k in range(args.objects)]
    print(f"model {args.model or args.size + ' (random)'} on {device} ({tracker.dtype}), loaded in {load_s:.1f} s; "
          f"RSS {rss_mb():.0f} MB", flush=True)

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    samples: dict[int, float] = {}
    calls = [0]

    def progress() -> bool:  # `stop` is called once per frame read: sample RSS here, never stop
        if calls[0] % 100 == 0:
            samples[calls[0]] = round(rss_mb(), 1)
            print(f"frame {calls[0]}: RSS {samples[calls[0]]:.0f} MB", flush=True)
        calls[0] += 1
        return False

    started = time.perf_counter()
    tracks = tracker.propagate(synthetic_clip(args.frames, args.side, args.objects), seeds, stop=progress)
    elapsed = time.perf_counter() - started
    processed = args.frames - min(s.frame for s in seeds)
    samples[args.frames] = round(rss_mb(), 1)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    result = {"frames": processed, "frames_per_s": round(processed / elapsed, 2), "peak_rss_mb": round(peak_rss, 1),
              "model": args.model or f"random sam2-video {args.size}", "size": args.size, "device": device,
              "side": args.side, "objects": args.objects, "threads": torch.get_num_threads(), "rss_mb_at": samples,
              "load_s": round(load_s, 2), "tracked_frames": [len(t.frames) for t in tracks]}
    if device.startswith("cuda"):
        result["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        result["gpu"] = torch.cuda.get_device_name()
    print(f"{processed} frames in {elapsed:.1f} s: {processed / elapsed:.1f} frames/s; peak RSS {peak_rss:.0f} MB")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
