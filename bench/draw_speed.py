"""What stating the annotators' drawing speed (`train_draw_seconds`) is worth: the time saved on tree tiles when a
version's score cut is fitted for the speed the annotators really draw at, against a cut fitted for another speed.

Reads the out-of-fold tree predictions `bench/routing.py --cache DIR` leaves in DIR (146 DeepForest 200-px tiles,
each predicted by a detector trained on the other fold's tiles, as the loop serves it). Over `--halves` random halves
of the tiles: the cut (`backend.training.comparison.fitted_cut`, the one a version serves with) is fitted on one half
under the cost model of `train_draw_seconds` = FIT s, and the other half is costed at that cut under the annotators'
real speed TRUE s (`backend.core.effort`); saving = 1 − seconds / drawing every box at TRUE s.

Usage: python bench/draw_speed.py --cache bench/.cache/routing [--halves 20]
Ends with one JSON line: per cache file (under "runs") {"FIT->TRUE": {"saving_pct", "cut"}} for FIT, TRUE in 7 and
25.5 s, and "gain_traditional_pct" (cut fitted for 25.5 s minus cut fitted for 7 s, both costed at 25.5 s) and
"gain_fast_pct" (the reverse at 7 s: what a wrong statement costs fast annotators); "min_gain_traditional_pct".
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from backend.training.comparison import THRESHOLDS, cut_costs, fitted_cut  # noqa: E402
from backend.core.effort import FAST, TRADITIONAL, CostModel  # noqa: E402


def tile_costs(rows: list[tuple], model: CostModel) -> tuple[np.ndarray, np.ndarray]:
    """(float (tiles, cuts) seconds to correct each tile's served regions at each cut under `model`, float (tiles,)
    seconds to draw each tile's boxes). `rows`: the routing cache's (name, views, boxes, labels); views[0] is the
    served prediction of the image (`Detections`)."""
    costs, manual = [], []
    for _, views, boxes, _ in rows:
        served = views[0]
        prediction = {"boxes": np.asarray(served.xyxy, np.float32).reshape(-1, 4),
                      "scores": np.asarray(served.scores, np.float32), "labels": np.ones(len(served), np.int64)}
        truth = {"boxes": np.asarray(boxes, np.float32).reshape(-1, 4), "labels": np.ones(len(boxes), np.int64)}
        costs.append(cut_costs([prediction], [truth], 1, model)[0])
        manual.append(model.draw * len(truth["boxes"]))
    return np.array(costs), np.array(manual)


def cross_half(rows: list[tuple], fit: CostModel, true: CostModel, halves: int) -> dict:
    """Mean over `halves` random halves: the cut fitted under `fit` on one half, the other half costed under
    `true` at it."""
    fit_costs, _ = tile_costs(rows, fit)
    true_costs, manual = tile_costs(rows, true)
    savings, cuts = [], []
    for seed in range(halves):
        order = np.random.default_rng(seed).permutation(len(rows))
        a, b = order[:len(rows) // 2], order[len(rows) // 2:]
        cut = fitted_cut(fit_costs[a])
        savings.append(1 - true_costs[b, THRESHOLDS.index(cut)].sum() / manual[b].sum())
        cuts.append(cut)
    return {"saving_pct": round(100 * float(np.mean(savings)), 1), "cut": round(float(np.median(cuts)), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=ROOT / "bench" / ".cache" / "routing")
    parser.add_argument("--halves", type=int, default=20)
    args = parser.parse_args()
    files = sorted(args.cache.glob("trees-*.pkl"))
    if not files:
        sys.exit(f"no tree predictions in {args.cache}: run bench/routing.py --cache {args.cache} first")
    runs = {}
    for path in files:
        rows, served = pickle.loads(path.read_bytes())
        figures = {f"{fit.draw:g}->{true.draw:g}": cross_half(rows, fit, true, args.halves)
                   for fit in (FAST, TRADITIONAL) for true in (FAST, TRADITIONAL)}
        gain = lambda right, wrong: round(figures[right]["saving_pct"] - figures[wrong]["saving_pct"], 1)  # noqa: E731
        figures["gain_traditional_pct"] = gain("25.5->25.5", "7->25.5")
        figures["gain_fast_pct"] = gain("7->7", "25.5->7")
        figures["tiles"], figures["views"] = len(rows), served.get("views")
        runs[path.stem] = figures
        print(f"{path.stem}: {json.dumps(figures)}")
    print(json.dumps({"runs": runs, "halves": args.halves,
                      "min_gain_traditional_pct": min(r["gain_traditional_pct"] for r in runs.values())}))


if __name__ == "__main__":
    main()
