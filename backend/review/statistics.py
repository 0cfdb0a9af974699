"""Label statistics of a project: regions and tasks per label, per annotator and per day; box size and aspect
histograms; rare, unused, unknown and lopsided labels called out.

Counting rules: the label distribution, histograms and call-outs about labels use the annotation that counts per
task (`Task.chosen`), so a task annotated twice is counted once; the per-annotator and per-day tables use every
submitted annotation (and count cancelled ones separately). "Regions" include image-level choices (one per chosen
value); the box histograms use rectangle, brush and polygon regions only. Days are UTC dates of `created_at`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import timezone

import numpy as np

from backend.core.ontology import Ontology
from backend.review.export import Task

RARE_SHARE = 0.02
RARE_COUNT = 10
LOPSIDED_RATIO = 3.0
LOPSIDED_MIN_REGIONS = 20
LOPSIDED_MIN_EXPECTED = 5.0
ASPECT_EDGES = np.linspace(-3.0, 3.0, 25)  # log2(width / height); the end bins take everything beyond


def _histogram(values: np.ndarray, edges: np.ndarray) -> list[int]:
    clipped = np.clip(values, edges[0], edges[-1])
    return np.histogram(clipped, edges)[0].astype(int).tolist()


def size_edges(sides: np.ndarray, bins: int = 20) -> np.ndarray:
    """Geometric bin edges (pixels) from the smallest to the largest box side (sqrt area); 1..2 px if empty."""
    lo, hi = (float(sides.min()), float(sides.max())) if sides.size else (1.0, 2.0)
    lo = max(lo, 0.5)
    hi = max(hi, lo * 1.01)
    return np.geomspace(lo, hi * 1.0001, bins + 1)


def label_statistics(tasks: list[Task], ontology: Ontology, bins: int = 20) -> dict:
    """Returns {"n_tasks", "n_annotated_tasks", "n_annotations", "n_cancelled", "n_regions",
    "labels": [{"label", "regions", "tasks", "share", "in_config", "by_control"}] (config order, then unknown),
    "annotators": [{"annotator", "annotations", "tasks", "regions", "cancelled", "mean_lead_time_s",
    "median_lead_time_s", "by_label"}] (most annotations first),
    "days": [{"day" (YYYY-MM-DD), "annotations", "regions", "by_label"}] (chronological),
    "box_size": {"unit", "edges", "counts", "by_label"}, "box_relative_size": same (sqrt(box area / image
    area)), "aspect": same (log2 width / height), "imbalance_ratio" (most / least used label, None if < 2 used),
    "callouts": [{"kind": "unused" | "rare" | "unknown" | "lopsided", "label", "annotator"?, "text"}],
    "thresholds": {...}}."""
    config_labels = ontology.labels
    regions_per_label, tasks_per_label = Counter(), Counter()
    by_control: dict[str, Counter] = defaultdict(Counter)
    sides, relative, aspects, box_labels = [], [], [], []
    annotated = 0
    for task in tasks:
        chosen = task.chosen
        if chosen is None:
            continue
        annotated += 1
        r = chosen.regions
        regions_per_label.update(r.labels)
        tasks_per_label.update(set(r.labels))
        for label, control in zip(r.labels, r.controls):
            by_control[label][control] += 1
        boxes = r.is_box
        if boxes.any():
            wh = (r.xyxy[boxes, 2:] - r.xyxy[boxes, :2]).clip(min=1e-3)
            side = np.sqrt(wh[:, 0] * wh[:, 1])
            sides.append(side)
            w, h = r.image_size
            relative.append(side / np.sqrt(w * h) if w and h else np.full(len(side), np.nan))
            aspects.append(np.log2(wh[:, 0] / wh[:, 1]))
            box_labels += [label for label, b in zip(r.labels, boxes) if b]
    n_regions = sum(regions_per_label.values())
    ordered = list(config_labels) + sorted(set(regions_per_label) - set(config_labels))
    labels = [{"label": label, "regions": regions_per_label[label], "tasks": tasks_per_label[label],
               "share": round(regions_per_label[label] / n_regions, 4) if n_regions else 0.0,
               "in_config": label in config_labels, "by_control": dict(by_control[label])} for label in ordered]

    annotators: dict[str, dict] = defaultdict(lambda: {"annotations": 0, "tasks": set(), "regions": 0, "cancelled": 0,
                                                       "lead": [], "by_label": Counter()})
    days: dict[str, dict] = defaultdict(lambda: {"annotations": 0, "regions": 0, "by_label": Counter()})
    for task in tasks:
        for a in task.annotations:
            row = annotators[a.annotator]
            if a.cancelled:
                row["cancelled"] += 1
                continue
            row["annotations"] += 1
            row["tasks"].add(task.id)
            row["regions"] += len(a.regions)
            row["by_label"].update(a.regions.labels)
            if a.lead_time_s is not None:
                row["lead"].append(a.lead_time_s)
            if a.created_at is not None:
                day = days[a.created_at.astimezone(timezone.utc).strftime("%Y-%m-%d")]
                day["annotations"] += 1
                day["regions"] += len(a.regions)
                day["by_label"].update(a.regions.labels)
    annotator_rows = [{"annotator": name, "annotations": v["annotations"], "tasks": len(v["tasks"]),
                       "regions": v["regions"], "cancelled": v["cancelled"],
                       "mean_lead_time_s": round(float(np.mean(v["lead"])), 2) if v["lead"] else None,
                       "median_lead_time_s": round(float(np.median(v["lead"])), 2) if v["lead"] else None,
                       "by_label": dict(v["by_label"])}
                      for name, v in sorted(annotators.items(), key=lambda kv: (-kv[1]["annotations"], kv[0]))]
    day_rows = [{"day": day, "annotations": v["annotations"], "regions": v["regions"], "by_label": dict(v["by_label"])}
                for day, v in sorted(days.items())]

    side_all = np.concatenate(sides) if sides else np.zeros(0)
    rel_all = np.concatenate(relative) if relative else np.zeros(0)
    asp_all = np.concatenate(aspects) if aspects else np.zeros(0)
    box_labels = np.array(box_labels, object)
    s_edges = size_edges(side_all, bins)
    r_edges = np.linspace(0.0, 1.0, bins + 1)
    rel_ok = np.isfinite(rel_all)

    def hist(values, edges, unit, ok=None):
        ok = np.ones(len(values), bool) if ok is None else ok
        return {"unit": unit, "edges": [round(float(e), 4) for e in edges], "counts": _histogram(values[ok], edges),
                "by_label": {label: _histogram(values[ok & (box_labels == label)], edges)
                             for label in ordered if ((box_labels == label) & ok).any()}}

    used = [row for row in labels if row["regions"]]
    callouts = _callouts(labels, annotator_rows, n_regions)
    return {"n_tasks": len(tasks), "n_annotated_tasks": annotated,
            "n_annotations": sum(r["annotations"] for r in annotator_rows),
            "n_cancelled": sum(r["cancelled"] for r in annotator_rows), "n_regions": n_regions,
            "labels": labels, "annotators": annotator_rows, "days": day_rows,
            "box_size": hist(side_all, s_edges, "sqrt(box area) in pixels"),
            "box_relative_size": hist(rel_all, r_edges, "sqrt(box area / image area)", rel_ok),
            "aspect": hist(asp_all, ASPECT_EDGES, "log2(width / height)"),
            "imbalance_ratio": (round(max(r["regions"] for r in used) / min(r["regions"] for r in used), 2)
                                if len(used) >= 2 else None),
            "callouts": callouts,
            "thresholds": {"rare_share": RARE_SHARE, "rare_count": RARE_COUNT, "lopsided_ratio": LOPSIDED_RATIO,
                           "lopsided_min_regions": LOPSIDED_MIN_REGIONS}}


def _callouts(labels: list[dict], annotators: list[dict], n_regions: int) -> list[dict]:
    """Unused labels (in the config, never annotated), unknown ones (annotated, not in the config), rare ones
    (< RARE_COUNT regions or < RARE_SHARE of all), lopsided ones (an annotator with >= LOPSIDED_MIN_REGIONS
    regions uses the label LOPSIDED_RATIO times more or less often than the whole team)."""
    out = []
    for row in labels:
        label, n = row["label"], row["regions"]
        if not row["in_config"]:
            out.append({"kind": "unknown", "label": label,
                        "text": f"{label}: {n} regions carry a label the config no longer has"})
        elif n == 0:
            out.append({"kind": "unused", "label": label, "text": f"{label}: in the config, never annotated"})
        elif n < RARE_COUNT or n / max(n_regions, 1) < RARE_SHARE:
            out.append({"kind": "rare", "label": label,
                        "text": f"{label}: only {n} regions ({n / max(n_regions, 1):.1%} of all); too few to train on"})
    totals = Counter()
    for a in annotators:
        totals.update(a["by_label"])
    all_regions = sum(totals.values())
    if len([a for a in annotators if a["regions"]]) < 2 or not all_regions:
        return out
    for a in annotators:
        if a["regions"] < LOPSIDED_MIN_REGIONS:
            continue
        for label, total in sorted(totals.items()):
            team = total / all_regions
            own = a["by_label"].get(label, 0) / a["regions"]
            expected = team * a["regions"]
            high = own >= LOPSIDED_RATIO * team and a["by_label"].get(label, 0) >= LOPSIDED_MIN_EXPECTED
            low = own * LOPSIDED_RATIO <= team and expected >= LOPSIDED_MIN_EXPECTED
            if high or low:
                out.append({"kind": "lopsided", "label": label, "annotator": a["annotator"],
                            "text": f"{label}: {a['annotator']} uses it for {own:.0%} of their regions, "
                                    f"the team for {team:.0%}"})
    return out
