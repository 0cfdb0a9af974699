"""The review report: one JSON-able dict with every section, consistent counts, links and a fixed time."""

import json
import time
from datetime import datetime, timezone

import numpy as np

from backend.review.report import build_report
from tests.review_fixtures import colour_features, photo_project, prediction, regions, task, ONTOLOGY

NOW = datetime(2026, 3, 4, 8, 30, tzinfo=timezone.utc)
LS = "http://localhost:8080/"


def test_every_section_json_and_consistent():
    export, ontology, load = photo_project()
    report = build_report(export, ontology, LS, 3, load_image=load, features=colour_features, now=NOW)
    text = json.dumps(report, allow_nan=False)
    assert json.loads(text) == report
    assert report["schema"] == "review/1" and report["generated_at"] == "2026-03-04T08:30:00+00:00"
    assert report["project"] == 3 and report["label_studio_url"] == "http://localhost:8080"
    assert set(report) >= {"counts", "statistics", "acceptance", "suspicious", "embedding", "routing", "timings_s"}
    c = report["counts"]
    assert (c["tasks"], c["annotated_tasks"], c["annotations"], c["predictions"]) == (25, 24, 24, 25)
    assert c["regions"] == report["statistics"]["n_regions"] == 28
    assert c["suspicious"] == report["suspicious"]["n_entries"]
    assert report["acceptance"]["n_tasks"] == report["routing"]["n_tasks"] == 24
    assert [v["model_version"] for v in report["acceptance"]["by_model_version"]] == ["v1", "v2"]
    assert report["embedding"]["n_embedded"] == 28 and report["embedding"]["feature_dim"] == 6
    assert c["flagged_regions"] == sum(p["flagged"] for p in report["embedding"]["points"])
    for point in report["embedding"]["points"]:
        assert ("link" in point) == point["flagged"]
    for entry in report["suspicious"]["entries"]:
        assert entry["link"] == f"http://localhost:8080/projects/3/data?task={entry['task_id']}"
    relabelled = {e["task_id"] for e in report["suspicious"]["entries"] if e["kind"] == "possibly_swapped"}
    assert relabelled == {6, 12, 18, 24}  # every relabelled task; the model was right on the others


def test_embedding_skipped_with_a_reason():
    export, ontology, load = photo_project(6)
    without = build_report(export, ontology, LS, 3, now=NOW)
    assert "image loader" in without["embedding"]["skipped"] and without["counts"]["flagged_regions"] == 0

    def broken(crops):
        raise RuntimeError("no weights")

    failed = build_report(export, ontology, LS, 3, load_image=load, features=broken, now=NOW)
    assert failed["embedding"]["skipped"] == "embedding failed: RuntimeError: no weights"
    empty = build_report([], ontology, LS, 3, load_image=load, features=colour_features, now=NOW)
    assert empty["embedding"]["skipped"] == "no annotated region yet" and empty["counts"]["tasks"] == 0
    json.dumps(empty, allow_nan=False)


def test_five_thousand_tasks_without_the_embedding_in_seconds():
    rng = np.random.default_rng(0)
    export = []
    for t in range(1, 5001):
        boxes = rng.uniform(0, 300, (8, 2))
        boxes = np.c_[boxes, boxes + rng.uniform(10, 90, (8, 2))]
        labels = rng.choice(["cat", "dog"], 8).tolist()
        moved = boxes + rng.normal(0, 3, boxes.shape)
        export.append(task(t, regions(moved[:7], labels[:7], scores=np.ones(7)),
                           [prediction(regions(boxes, labels, scores=rng.uniform(0.3, 1, 8)))], annotator=t % 7))
    started = time.perf_counter()
    report = build_report(export, ONTOLOGY, LS, 1, now=NOW)
    seconds = time.perf_counter() - started
    assert report["counts"]["regions"] == 35000 and report["acceptance"]["overall"]["predicted"] == 40000
    assert seconds < 120, report["timings_s"]  # about 10-20 s on a busy 2-core CPU; the limit leaves room
