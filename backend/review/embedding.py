"""Embedding map: every annotated region's crop → features → 2-D, coloured by label; regions whose nearest
neighbours (in feature space) mostly carry another label are flagged.

Callables come from the caller: `load_image(task) -> uint8 (H, W, 3)` (the image as Label Studio shows it) and
`features(crops: float32 (N, 3, S, S) in [0, 1]) -> float32 (N, F)` (e.g.
`backend.models.imagenet.efficientnet_lite0_features()`). The cost is one image load per task with a sampled
region plus one feature pass per crop, so at most `max_regions` (2,000) regions are embedded: a seeded random
sample that keeps at least 20 regions of every label (all of a rarer one). Projection: UMAP (`umap-learn`, cosine,
15 neighbours) when it is installed and at least 50 regions are embedded, else PCA (SVD of the centred features).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Callable

import numpy as np

from backend.core.detections import box_iou
from backend.review.export import Task

MAX_REGIONS = 2000
MIN_PER_LABEL = 20
NEIGHBOURS = 10
FLAG_SHARE = 0.5  # flagged when MORE than this share of the k nearest neighbours carry another label
CROP_SIZE = 224
CONTEXT = 0.1  # crops extend each box by this fraction of its size on every side
UMAP_MIN_POINTS = 50


def region_crops(image: np.ndarray, boxes: np.ndarray, boxes_image_size: tuple[int, int] | None = None,
                 size: int = CROP_SIZE, context: float = CONTEXT) -> np.ndarray:
    """Bilinear crops of uint8 (H, W, 3) `image` (grey (H, W) and RGBA accepted) → float32 (N, 3, size, size)
    in [0, 1].

    boxes: float (N, 4) xyxy pixels of an image of `boxes_image_size` (width, height) (default: this image);
    boxes are rescaled to the loaded image, widened by `context` of their size per side, and sampled at `size` x
    `size` points (pixels outside the image repeat the border)."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    image = image[:, :, :3]  # grey → RGB, RGBA → RGB
    h, w = image.shape[:2]
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if boxes_image_size and tuple(boxes_image_size) != (w, h) and all(boxes_image_size):
        sx, sy = w / boxes_image_size[0], h / boxes_image_size[1]
        boxes = boxes * [sx, sy, sx, sy]
    pad = (boxes[:, 2:] - boxes[:, :2]) * context
    boxes = np.concatenate([boxes[:, :2] - pad, boxes[:, 2:] + pad], axis=1)
    steps = (np.arange(size) + 0.5) / size
    out = np.empty((len(boxes), 3, size, size), np.float32)
    for n, (x1, y1, x2, y2) in enumerate(boxes):
        xs = np.clip(x1 + steps * (x2 - x1) - 0.5, 0, w - 1)  # pixel centres sit at +0.5
        ys = np.clip(y1 + steps * (y2 - y1) - 0.5, 0, h - 1)
        x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
        x1i, y1i = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
        fx, fy = (xs - x0)[None, :, None], (ys - y0)[:, None, None]
        rows0, rows1 = image[y0], image[y1i]  # only the sampled rows and columns are converted to float
        top = rows0[:, x0].astype(np.float32) * (1 - fx) + rows0[:, x1i].astype(np.float32) * fx
        bottom = rows1[:, x0].astype(np.float32) * (1 - fx) + rows1[:, x1i].astype(np.float32) * fx
        out[n] = ((top * (1 - fy) + bottom * fy) / 255.0).transpose(2, 0, 1)
    return out


def annotated_regions(tasks: list[Task]) -> list[dict]:
    """Regions of every task's chosen annotation: [{"task", "index", "label", "xyxy", "image_size", "region_id"}].
    Box regions (rectangles, brushes, polygons) when the project has any, else its image-level choices (whole
    images); a region repeated in another control (same label, IoU >= 0.9, e.g. a box and its brush) counts once."""
    rows, has_boxes = [], False
    for task in tasks:
        chosen = task.chosen
        if chosen is None:
            continue
        r = chosen.regions
        has_boxes |= bool(r.is_box.any())
        kept: list[int] = []
        for i in range(len(r)):
            dup = [j for j in kept if r.labels[j] == r.labels[i] and r.is_box[j] == r.is_box[i]]
            if dup and box_iou(r.xyxy[i:i + 1], r.xyxy[dup]).max() >= 0.9:
                continue
            kept.append(i)
            rows.append({"task": task, "index": i, "label": r.labels[i], "xyxy": r.xyxy[i], "is_box": bool(r.is_box[i]),
                         "image_size": r.image_size, "region_id": r.ids[i]})
    return [row for row in rows if row["is_box"] == has_boxes]


def sample_regions(rows: list[dict], max_regions: int = MAX_REGIONS, min_per_label: int = MIN_PER_LABEL,
                   seed: int = 0) -> list[dict]:
    """At most `max_regions` rows: up to `min_per_label` of every label first, the rest drawn at random
    (seeded), in the original order."""
    if len(rows) <= max_regions:
        return rows
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        by_label[row["label"]].append(i)
    must = []
    for label in sorted(by_label):
        members = rng.permutation(by_label[label])
        must += members[:min_per_label].tolist()
    must = must[:max_regions]
    rest = rng.permutation(sorted(set(range(len(rows))) - set(must)))[:max_regions - len(must)]
    return [rows[i] for i in sorted(must + rest.tolist())]


def neighbour_labels(features: np.ndarray, labels: list[str], k: int = NEIGHBOURS) -> tuple[np.ndarray, list, np.ndarray]:
    """float (N, F) features, N labels → (float (N,) share of the k nearest neighbours (cosine, excluding the
    region itself) with another label, N most common other neighbour labels (None if none), int (N, k) neighbour
    indices)."""
    n = len(labels)
    k = min(k, n - 1)
    if k < 1:
        return np.zeros(n), [None] * n, np.zeros((n, 0), int)
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    labels_arr = np.array(labels, object)
    other = labels_arr[nearest] != labels_arr[:, None]
    share = other.mean(axis=1)
    common = []
    for i in range(n):
        counts = Counter(labels_arr[nearest[i]][other[i]])
        common.append(counts.most_common(1)[0][0] if counts else None)
    return share, common, nearest


def project_2d(features: np.ndarray, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
    """float (N, F) → (float32 (N, 2), "umap" or "pca"). `method`: "auto", "umap" or "pca"."""
    n = len(features)
    if method in ("auto", "umap") and n >= UMAP_MIN_POINTS:
        try:
            import umap  # optional: umap-learn
        except ImportError:
            if method == "umap":
                raise
        else:
            reducer = umap.UMAP(n_neighbors=min(15, n - 1), metric="cosine", random_state=seed, n_jobs=1)
            return np.asarray(reducer.fit_transform(features), np.float32), "umap"
    centred = features - features.mean(axis=0, keepdims=True)
    if n < 2:
        return np.zeros((n, 2), np.float32), "pca"
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    coords = u[:, :2] * s[:2]
    if coords.shape[1] < 2:
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    return coords.astype(np.float32), "pca"


def embedding_map(tasks: list[Task], load_image: Callable[[Task], np.ndarray],
                  features: Callable[[np.ndarray], np.ndarray], *, max_regions: int = MAX_REGIONS,
                  k: int = NEIGHBOURS, flag_share: float = FLAG_SHARE, method: str = "auto", seed: int = 0,
                  crop_size: int = CROP_SIZE, batch_size: int = 64) -> dict:
    """Returns {"method", "n_regions" (eligible), "n_embedded", "max_regions", "sampled", "k", "flag_share",
    "feature_dim", "images_failed", "image_errors" (first 5 messages), "seconds": {"crops", "features",
    "projection"}, "points": [{"task_id", "region_id", "label", "xyxy", "x", "y", "disagreement",
    "neighbour_label", "flagged"}]}. Flagged regions: more than `flag_share` of their k nearest neighbours carry
    another label (needs >= 2 labels among the embedded regions)."""
    rows = annotated_regions(tasks)
    sample = sample_regions(rows, max_regions, seed=seed)
    by_task: dict[int, list[dict]] = defaultdict(list)
    for row in sample:
        by_task[row["task"].id].append(row)
    kept, failed, errors = [], 0, []
    feats = []
    t0 = time.perf_counter()
    t_features = 0.0
    pending: list[np.ndarray] = []
    for task_rows in by_task.values():
        try:
            image = load_image(task_rows[0]["task"])
        except Exception as exc:  # any loader failure skips that task's regions, never the map
            failed += 1
            if len(errors) < 5:
                errors.append(f"task {task_rows[0]['task'].id}: {exc}")
            continue
        boxes = np.stack([row["xyxy"] for row in task_rows])
        pending.append(region_crops(image, boxes, task_rows[0]["image_size"], crop_size))
        kept += task_rows
        if sum(len(p) for p in pending) >= batch_size:
            t1 = time.perf_counter()
            feats.append(np.asarray(features(np.concatenate(pending)), np.float32))
            t_features += time.perf_counter() - t1
            pending = []
    if pending:
        t1 = time.perf_counter()
        feats.append(np.asarray(features(np.concatenate(pending)), np.float32))
        t_features += time.perf_counter() - t1
    t_crops = time.perf_counter() - t0 - t_features
    matrix = np.concatenate(feats) if feats else np.zeros((0, 0), np.float32)
    labels = [row["label"] for row in kept]
    t2 = time.perf_counter()
    coords, used = project_2d(matrix, method, seed) if len(kept) else (np.zeros((0, 2), np.float32), "none")
    share, common, _ = neighbour_labels(matrix, labels, k) if len(kept) else (np.zeros(0), [], None)
    several = len(set(labels)) >= 2
    points = [{"task_id": row["task"].id, "region_id": row["region_id"], "label": row["label"],
               "xyxy": [round(float(v), 1) for v in row["xyxy"]],
               "x": round(float(coords[i, 0]), 4), "y": round(float(coords[i, 1]), 4),
               "disagreement": round(float(share[i]), 4), "neighbour_label": common[i],
               "flagged": bool(several and share[i] > flag_share)} for i, row in enumerate(kept)]
    return {"method": used, "n_regions": len(rows), "n_embedded": len(points), "max_regions": max_regions,
            "sampled": len(sample) < len(rows), "k": min(k, max(len(points) - 1, 0)), "flag_share": flag_share,
            "feature_dim": int(matrix.shape[1]) if matrix.ndim == 2 and len(matrix) else 0,
            "images_failed": failed, "image_errors": errors,
            "seconds": {"crops": round(t_crops, 3), "features": round(t_features, 3),
                        "projection": round(time.perf_counter() - t2, 3)},
            "points": points}
