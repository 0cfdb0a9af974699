"""Brush RLE: our vectorised encoder against label-studio-sdk's `mask2rle` on a 1024x1024 mask.

Prints per-run timings, then one JSON line: {"ours_ms", "sdk_ms", "speedup", "identical", ...}.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
from label_studio_sdk.converter.brush import mask2rle

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from backend.labelstudio.rle import encode_mask  # noqa: E402


def make_mask(size: int = 1024) -> np.ndarray:
    """A realistic segmentation mask: two filled ellipses and a ring, not axis-aligned."""
    yy, xx = np.mgrid[:size, :size]
    a = ((xx - 400) / 260.0) ** 2 + ((yy - 500) / 180.0) ** 2 < 1
    b = ((xx - 760) / 120.0) ** 2 + ((yy - 260) / 200.0) ** 2 < 1
    r = np.hypot(xx - 700, yy - 780)
    return a | b | ((r > 90) & (r < 140))


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def main() -> None:
    mask = make_mask()
    ours = encode_mask(mask)
    sdk = mask2rle(mask.astype(np.uint8) * 255)
    identical = ours == list(sdk)
    ours_ms = best_of(lambda: encode_mask(mask), 20)
    sdk_ms = best_of(lambda: mask2rle(mask.astype(np.uint8) * 255), 3)
    print(f"mask 1024x1024, {int(mask.sum())} pixels set, RLE {len(ours)} bytes, identical={identical}")
    print(f"ours {ours_ms:.2f} ms   sdk {sdk_ms:.2f} ms")
    print(json.dumps({"ours_ms": round(ours_ms, 3), "sdk_ms": round(sdk_ms, 3),
                      "speedup": round(sdk_ms / ours_ms, 1), "identical": identical, "rle_bytes": len(ours)}))


if __name__ == "__main__":
    main()
