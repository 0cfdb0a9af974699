"""The review report of one project: everything `/review.json` returns, as one JSON-able dict.

    build_report(export, ontology, ls_url, project_id, load_image=None, features=None) -> dict

Keys: "schema" ("review/1"), "project", "label_studio_url", "generated_at" (ISO 8601 UTC), "counts",
"statistics" (`backend.review.statistics`), "acceptance" (`backend.review.acceptance`), "suspicious"
(`backend.review.suspicious`), "embedding" (`backend.review.embedding`, or {"skipped": reason}), "routing"
(`backend.review.routing`), "problems", "timings_s". Flagged embedding points carry a "link" to their task.

Cost: everything but the embedding is linear in the export and runs in seconds for thousands of tasks; the
embedding loads one image per task with a sampled region and computes features of at most `max_embedded`
(2,000) crops, so it dominates and is the part to run in a background job.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Callable

import numpy as np

from backend.core.ontology import Ontology
from backend.review.acceptance import acceptance
from backend.review.drawing import drawing_time
from backend.review.embedding import MAX_REGIONS, embedding_map
from backend.review.export import Prediction, Task, read_export
from backend.review.routing import hybrid_routing, routing_curve, task_agreement
from backend.review.statistics import label_statistics
from backend.review.suspicious import find_suspicious, made_before_annotation, task_link

SCHEMA = "review/1"


def build_report(export: list[dict], ontology: Ontology, ls_url: str, project_id: int, *,
                 load_image: Callable[[Task], np.ndarray] | None = None,
                 features: Callable[[np.ndarray], np.ndarray] | None = None,
                 out_of_sample: Callable[[Task, Prediction], bool | None] = made_before_annotation,
                 now: datetime | None = None, max_embedded: int = MAX_REGIONS, suspicious_limit: int | None = 500,
                 embedding_method: str = "auto", accept_threshold: float | None = None,
                 shown_version: str | None = None, draw_seconds: float | None = None) -> dict:
    """The report of a Label Studio JSON export (a list of tasks with annotations and predictions).

    load_image(task) -> uint8 (H, W, 3) and features(float32 (N, 3, S, S) in [0, 1]) -> float32 (N, F) enable the
    embedding map; without both it is skipped with a reason, and an error inside it is reported there instead of
    failing the report. out_of_sample(task, prediction) says whether a prediction was made by a model that did not
    train on the task (default: created no later than the annotation). `now` fixes `generated_at` (tests).
    accept_threshold: the project's (None: not set), stated in `routing["hybrid"]`, never applied; shown_version: the
    Label Studio project's model_version (whose prediction scores the Data Manager filters on), None if unknown;
    draw_seconds: the project's `train_draw_seconds`, set beside the drawing time its lead times show
    (`acceptance["drawing_time"]`, `backend.review.drawing`)."""
    timings = {}
    started = time.perf_counter()
    skipped: list[dict] = []
    tasks = read_export(export, ontology, skipped)
    timings["read"] = time.perf_counter() - started

    def timed(name, fn, *args, **kwargs):
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        timings[name] = time.perf_counter() - t0
        return result

    statistics = timed("statistics", label_statistics, tasks, ontology)
    accepted = timed("acceptance", acceptance, tasks)
    accepted["drawing_time"] = timed("drawing_time", drawing_time, tasks, draw_seconds)
    suspicious = timed("suspicious", find_suspicious, tasks, ls_url, project_id, out_of_sample=out_of_sample,
                       limit=suspicious_limit)
    agreement = timed("agreement", task_agreement, tasks)  # per reviewed task, for both routing views
    routing = timed("routing", routing_curve, tasks, rows=agreement)
    routing["hybrid"] = timed("hybrid", hybrid_routing, tasks, accept_threshold,
                              suggested=routing["suggested_threshold"], shown_version=shown_version, rows=agreement)
    if load_image is None or features is None:
        embedding = {"skipped": "no image loader / feature function given to the report builder"}
    elif not statistics["n_regions"]:
        embedding = {"skipped": "no annotated region yet"}
    else:
        try:
            embedding = timed("embedding", embedding_map, tasks, load_image, features, max_regions=max_embedded,
                              method=embedding_method)
        except Exception as exc:  # a model or loader failure costs the map, never the report
            embedding = {"skipped": f"embedding failed: {type(exc).__name__}: {exc}"}
        for point in embedding.get("points", []):
            if point["flagged"]:
                point["link"] = task_link(ls_url, project_id, point["task_id"])
    malformed = sum(a.regions.malformed for t in tasks for a in t.annotations) + \
        sum(p.regions.malformed for t in tasks for p in t.predictions)
    counts = {"tasks": len(tasks), "annotated_tasks": sum(t.chosen is not None for t in tasks),
              "annotations": sum(len(t.submitted) for t in tasks),
              "cancelled_annotations": sum(len(t.annotations) - len(t.submitted) for t in tasks),
              "predictions": sum(len(t.predictions) for t in tasks),
              "tasks_with_predictions": sum(bool(t.predictions) for t in tasks),
              "regions": statistics["n_regions"],
              "suspicious": suspicious["n_entries"],
              "flagged_regions": sum(p["flagged"] for p in embedding.get("points", []))}
    generated = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return {"schema": SCHEMA, "project": int(project_id), "label_studio_url": ls_url.rstrip("/"),
            "generated_at": generated.isoformat(timespec="seconds"), "counts": counts,
            "statistics": statistics, "acceptance": accepted, "suspicious": suspicious, "embedding": embedding,
            "routing": routing, "problems": {"malformed_regions": malformed, "skipped_tasks": skipped[:100],
                                             "n_skipped_tasks": len(skipped)},
            "timings_s": {k: round(v, 3) for k, v in timings.items()}}
