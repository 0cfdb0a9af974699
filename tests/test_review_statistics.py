"""Label statistics: counts per label / annotator / day, histograms, and the call-outs (table-driven)."""

import numpy as np
import pytest

from backend.core.ontology import Control, Ontology
from backend.review.export import read_export
from backend.review.statistics import label_statistics
from tests.review_fixtures import CHOICE, ONTOLOGY, prediction, regions, task

B1, B2, B3 = [0, 0, 40, 10], [100, 100, 120, 120], [200, 50, 210, 90]  # 40x10, 20x20, 10x40 px


def _project():
    return [
        task(1, regions([B1, B2], ["cat", "dog"]), annotator=1, created="2026-03-01T08:00:00Z", lead_time=10),
        task(2, regions([B2], ["cat"]) + regions([[0, 0, 1, 1]], ["indoor"], (CHOICE,)),
             annotator={"id": 2, "email": "ann@example.com"}, created="2026-03-01T23:30:00+00:00", lead_time=30),
        task(3, regions([B3, B3], ["dog", "dog"]), annotator=1, created="2026-03-02T01:00:00Z", lead_time=20),
        task(4, regions([B1], ["cat"]), annotator=1, cancelled=True, created="2026-03-02T02:00:00Z"),
        task(5, None, [prediction(regions([B1], ["cat"]))]),
    ]


def test_counts_per_label_annotator_and_day():
    stats = label_statistics(read_export(_project(), ONTOLOGY), ONTOLOGY)
    assert (stats["n_tasks"], stats["n_annotated_tasks"], stats["n_annotations"], stats["n_cancelled"]) == (5, 3, 3, 1)
    rows = {r["label"]: r for r in stats["labels"]}
    assert [r["label"] for r in stats["labels"]] == ["cat", "dog", "indoor", "outdoor"]
    assert (rows["cat"]["regions"], rows["cat"]["tasks"]) == (2, 2)
    assert (rows["dog"]["regions"], rows["dog"]["tasks"]) == (3, 2)
    assert (rows["indoor"]["regions"], rows["outdoor"]["regions"]) == (1, 0)
    assert rows["dog"]["share"] == pytest.approx(3 / 6, abs=1e-4) and rows["cat"]["by_control"] == {"box": 2}
    people = {a["annotator"]: a for a in stats["annotators"]}
    assert set(people) == {"user 1", "ann@example.com"}
    assert (people["user 1"]["annotations"], people["user 1"]["regions"], people["user 1"]["cancelled"]) == (2, 4, 1)
    assert people["user 1"]["mean_lead_time_s"] == 15.0 and people["ann@example.com"]["by_label"] == {"cat": 1, "indoor": 1}
    assert [(d["day"], d["annotations"], d["regions"]) for d in stats["days"]] == [("2026-03-01", 2, 4), ("2026-03-02", 1, 2)]
    assert stats["imbalance_ratio"] == 3.0


def test_box_histograms():
    stats = label_statistics(read_export(_project(), ONTOLOGY), ONTOLOGY)
    assert sum(stats["box_size"]["counts"]) == 5  # the choice is not a box
    assert sum(stats["box_size"]["by_label"]["dog"]) == 3
    edges = np.array(stats["box_size"]["edges"])
    assert edges[0] <= 20 <= edges[-1] and np.all(np.diff(edges) > 0)
    aspect = stats["aspect"]
    centres = (np.array(aspect["edges"][:-1]) + np.array(aspect["edges"][1:])) / 2
    wide = centres[np.array(aspect["counts"]) > 0]
    assert aspect["unit"] == "log2(width / height)" and min(wide) < -1.5 and max(wide) > 1.5  # 10x40 and 40x10
    assert sum(stats["box_relative_size"]["counts"]) == 5


ONT = Ontology((Control("box", "RectangleLabels", "image", "image", ("cat", "dog", "fox", "owl")),))
ANY = Control("box", "RectangleLabels", "image", "image", ("cat", "dog", "fox", "owl", "bat"))  # bat: not in ONT


def _many(labels_by_annotator):
    """One task per region: {annotator: [label, ...]}."""
    out, i = [], 0
    for annotator, labels in labels_by_annotator.items():
        for label in labels:
            i += 1
            out.append(task(i, regions([B2], [label], (ANY,)), annotator=annotator))
    return out
CALLOUTS = [
    # name, annotations per annotator, expected (kind, label, annotator or None) call-outs
    ("balanced: only the unused ones", {1: ["cat", "dog"] * 30, 2: ["cat", "dog"] * 30},
     {("unused", "fox", None), ("unused", "owl", None)}),
    ("rare label", {1: ["cat"] * 40 + ["dog"] * 40 + ["fox"] * 3 + ["owl"] * 40}, {("rare", "fox", None)}),
    ("unknown label", {1: ["cat", "dog", "fox", "owl"] * 20 + ["bat"] * 12}, {("unknown", "bat", None)}),
    ("lopsided: one annotator hardly uses dog, the other hardly cat",
     {1: ["cat"] * 36 + ["dog"] * 4 + ["fox"] * 20 + ["owl"] * 20, 2: ["cat"] * 4 + ["dog"] * 36 + ["fox"] * 20 + ["owl"] * 20},
     {("lopsided", "dog", "user 1"), ("lopsided", "cat", "user 2")}),
    ("lopsided: only one annotator uses fox",
     {1: ["cat"] * 60 + ["dog"] * 60 + ["owl"] * 20, 2: ["cat", "dog", "fox", "owl"] * 10},
     {("lopsided", "fox", "user 2"), ("lopsided", "fox", "user 1")}),
    ("too few regions to call an annotator lopsided", {1: ["cat", "dog", "fox", "owl"] * 20, 2: ["fox"] * 10},
     set()),
]


@pytest.mark.parametrize("name,by_annotator,expected", CALLOUTS, ids=[c[0] for c in CALLOUTS])
def test_callouts(name, by_annotator, expected):
    stats = label_statistics(read_export(_many(by_annotator), ONT), ONT)
    got = {(c["kind"], c["label"], c.get("annotator")) for c in stats["callouts"]}
    assert got == expected
    assert all(c["text"] for c in stats["callouts"])


def test_empty_project():
    stats = label_statistics([], ONTOLOGY)
    assert stats["n_regions"] == 0 and stats["imbalance_ratio"] is None and stats["days"] == []
    assert sum(stats["box_size"]["counts"]) == 0
