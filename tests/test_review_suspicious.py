"""Suspicious annotations: each kind found on a project where the model is otherwise reliable, ranked, linked,
and out-of-sample predictions preferred. Regions are made by the real converters."""

import numpy as np
import pytest

from backend.review.export import read_export
from backend.review.suspicious import find_suspicious, isotonic, recall_prior_strength, task_link
from tests.review_fixtures import ONTOLOGY, prediction, regions, task

LS = "http://ls.example:8080/"
CAT, DOG = [40, 40, 120, 120], [200, 60, 280, 140]
NUDGE = [4, 4, 4, 4]  # the model's boxes sit 4 px off the annotated ones (IoU 0.82): a typical fit


def _background(n=30):
    """Tasks where the model agrees with the annotation (a cat and a dog, score 0.9) and also makes one
    low-score false detection (score 0.35) nobody annotated: precision 1 at 0.9, 0 at 0.35."""
    out = []
    for t in range(1, n + 1):
        ann = regions([CAT, DOG], ["cat", "dog"])
        pred = regions([np.add(CAT, NUDGE), np.add(DOG, NUDGE), [300, 200, 360, 260]], ["cat", "dog", "cat"],
                       scores=[0.9, 0.9, 0.35])
        out.append(task(t, ann, [prediction(pred)]))
    return out


EXTRA = [330, 180, 390, 240]  # a third object
CASES = [
    # name, annotated (boxes, labels), predicted (boxes, labels, scores), expected kind, region source, region box
    ("missed: a confident prediction no annotation covers",
     ([CAT, DOG], ["cat", "dog"]), ([CAT, DOG, [300, 40, 380, 120]], ["cat", "dog", "cat"], [0.9, 0.9, 0.92]),
     "possibly_missed", "prediction", [300, 40, 380, 120]),
    ("spurious: an annotated region no prediction supports",
     ([CAT, DOG, [300, 40, 380, 120]], ["cat", "dog", "dog"]), ([CAT, DOG], ["cat", "dog"], [0.9, 0.9]),
     "possibly_spurious", "annotation", [300, 40, 380, 120]),
    ("swapped: the same box with another label",
     ([CAT, DOG], ["cat", "cat"]), ([CAT, DOG], ["cat", "dog"], [0.9, 0.9]),
     "possibly_swapped", "annotation", DOG),
    ("swapped although a weak prediction of the annotated label matched (one box per class)",
     ([CAT, DOG], ["cat", "cat"]), ([CAT, DOG, DOG], ["cat", "dog", "cat"], [0.9, 0.9, 0.35]),
     "possibly_swapped", "annotation", DOG),
    ("loose box: twice as wide as the model's box (IoU 0.5)",
     ([CAT, [200, 60, 360, 140]], ["cat", "dog"]), ([CAT, DOG], ["cat", "dog"], [0.9, 0.9]),
     "loose_box", "annotation", [200, 60, 360, 140]),
    ("loose box: shifted by half its size",
     ([CAT, [240, 60, 320, 140]], ["cat", "dog"]), ([CAT, DOG], ["cat", "dog"], [0.9, 0.9]),
     "loose_box", "annotation", [240, 60, 320, 140]),
]


@pytest.mark.parametrize("name,annotated,predicted,kind,source,box", CASES, ids=[c[0] for c in CASES])
def test_each_kind_is_found_and_ranked_first(name, annotated, predicted, kind, source, box):
    suspect = task(99, regions(*annotated), [prediction(regions(predicted[0], predicted[1], scores=predicted[2]))])
    report = find_suspicious(read_export(_background() + [suspect], ONTOLOGY), LS, 7)
    top = report["entries"][0]
    assert (top["task_id"], top["kind"], top["region"]["source"]) == (99, kind, source)
    np.testing.assert_allclose(top["region"]["xyxy"], box, atol=0.1)
    assert top["rank"] == 1 and top["score"] >= 0.3 and top["reason"]
    assert top["link"] == "http://ls.example:8080/projects/7/data?task=99"
    assert [e["task_id"] for e in report["entries"] if e["score"] >= 0.3] == [99]  # the background is clean
    assert report["by_kind"][kind] >= 1 and report["n_tasks_checked"] == 31


def test_a_weak_other_label_is_no_swap():
    suspect = task(99, regions([CAT, DOG], ["cat", "dog"]),
                   [prediction(regions([CAT, DOG, CAT], ["cat", "dog", "dog"], scores=[0.9, 0.9, 0.35]))])
    report = find_suspicious(read_export(_background() + [suspect], ONTOLOGY), LS, 7)
    assert not [e for e in report["entries"] if e["task_id"] == 99 and e["score"] >= 0.3]


def test_scores_follow_the_models_precision_at_that_score():
    """A missed region at score 0.92 (where the model is always right) outranks one at 0.35 (always wrong)."""
    suspect = task(99, regions([CAT, DOG], ["cat", "dog"]),
                   [prediction(regions([CAT, DOG, [300, 40, 380, 120], [300, 200, 360, 260]], ["cat", "dog", "cat", "cat"],
                                       scores=[0.9, 0.9, 0.92, 0.35]))])
    report = find_suspicious(read_export(_background() + [suspect], ONTOLOGY), LS, 7)
    missed = [e for e in report["entries"] if e["task_id"] == 99 and e["kind"] == "possibly_missed"]
    assert len(missed) == 1 and missed[0]["prediction_score"] == pytest.approx(0.92)
    assert report["calibration"]["cat"]["recall"] == 1.0


def test_spurious_weighs_how_reliable_the_model_is_on_the_task():
    """An unsupported region on a task where the model found everything else outranks one where it found nothing."""
    found_rest = task(98, regions([CAT, DOG, EXTRA], ["cat", "dog", "dog"]),
                      [prediction(regions([CAT, DOG], ["cat", "dog"], scores=[0.9, 0.9]))])
    found_nothing = task(99, regions([CAT, DOG, EXTRA], ["cat", "dog", "dog"]), [prediction([])])
    report = find_suspicious(read_export(_background() + [found_rest, found_nothing], ONTOLOGY), LS, 7)
    spurious = {e["task_id"]: e["score"] for e in report["entries"] if e["kind"] == "possibly_spurious"
                and e["region"]["xyxy"] == [float(v) for v in EXTRA]}
    assert spurious[98] > 0.8 > spurious.get(99, 0.0)


def test_each_region_is_in_one_entry_at_most():
    suspect = task(99, regions([CAT, [200, 60, 360, 140], EXTRA], ["dog", "dog", "cat"]),
                   [prediction(regions([CAT, DOG, [10, 200, 90, 280]], ["cat", "dog", "cat"], scores=[0.9, 0.9, 0.9]))])
    entries = [e for e in find_suspicious(read_export(_background() + [suspect], ONTOLOGY), LS, 7, min_score=0)["entries"]
               if e["task_id"] == 99]
    keys = [(r["source"], tuple(r["xyxy"])) for e in entries for r in (e["region"], e["other_region"]) if r]
    assert len(keys) == len(set(keys)) == 6
    assert sorted(e["kind"] for e in entries) == ["loose_box", "possibly_missed", "possibly_spurious", "possibly_swapped"]


OUT_OF_SAMPLE_CASES = [
    # name, predictions [(model_version, created_at)], expected reference version, expected out_of_sample
    ("before the annotation preferred over a later one", [("v1", "2026-03-01T00:00:00Z"), ("v2", "2026-03-05T00:00:00Z")],
     "v1", True),
    ("only a later prediction: used, flagged", [("v2", "2026-03-05T00:00:00Z")], "v2", False),
    ("times unknown", [("v1", None)], "v1", None),
]


@pytest.mark.parametrize("name,preds,version,flag", OUT_OF_SAMPLE_CASES, ids=[c[0] for c in OUT_OF_SAMPLE_CASES])
def test_out_of_sample_predictions_are_preferred(name, preds, version, flag):
    results = regions([CAT, DOG, [300, 40, 380, 120]], ["cat", "dog", "cat"], scores=[0.9, 0.9, 0.92])
    suspect = task(99, regions([CAT, DOG], ["cat", "dog"]), [(results, v, 0.9, c) for v, c in preds])
    entries = [e for e in find_suspicious(read_export(_background() + [suspect], ONTOLOGY), LS, 7)["entries"]
               if e["task_id"] == 99]
    assert entries and {(e["model_version"], e["out_of_sample"]) for e in entries} == {(version, flag)}


def test_custom_out_of_sample_rule_and_limit():
    results = regions([CAT, DOG, [300, 40, 380, 120]], ["cat", "dog", "cat"], scores=[0.9, 0.9, 0.92])
    suspect = task(99, regions([CAT, DOG], ["cat", "dog"]), [(results, "held-out-model", 0.9, None)])
    report = find_suspicious(read_export(_background() + [suspect], ONTOLOGY), LS, 7,
                             out_of_sample=lambda t, p: p.model_version == "held-out-model", limit=1)
    assert len(report["entries"]) == 1 and report["entries"][0]["out_of_sample"] is True
    assert report["n_entries"] >= 1 and report["n_tasks_out_of_sample"] == 1


ISOTONIC = [
    ("already monotone", [0, 0, 1, 1], [0, 0, 1, 1]),
    ("one violation pooled", [0, 1, 0, 1], [0, 0.5, 0.5, 1]),
    ("all decreasing pooled to the mean", [1, 1, 0, 0], [0.5, 0.5, 0.5, 0.5]),
    ("empty", [], []),
]


@pytest.mark.parametrize("name,y,expected", ISOTONIC, ids=[c[0] for c in ISOTONIC])
def test_isotonic(name, y, expected):
    np.testing.assert_allclose(isotonic(np.array(y, float)), expected)


def test_isotonic_weights_and_tied_scores_pool():
    np.testing.assert_allclose(isotonic(np.array([0.8, 0.2]), np.array([1.0, 3.0])), [0.35, 0.35])
    suspect = task(99, regions([CAT, DOG], ["cat", "dog"]), [prediction(regions([CAT, DOG, [10, 200, 50, 240]],
                                                                                ["cat", "dog", "cat"], scores=[0.9, 0.9, 0.35]))])
    project = _background() + [suspect]
    project[0]["annotations"][0]["result"] += regions([[300, 200, 360, 260]], ["cat"])  # one 0.35 hit of 31
    report = find_suspicious(read_export(project, ONTOLOGY), LS, 7, min_score=0)
    missed = [e for e in report["entries"] if e["kind"] == "possibly_missed"]
    assert missed and all(e["score"] == pytest.approx(1 / 31, abs=1e-3) for e in missed)


def test_task_link():
    assert task_link("http://localhost:8080/", 3, 41) == "http://localhost:8080/projects/3/data?task=41"


@pytest.mark.parametrize("annotated_dog,nearest_iou", [
    ([300, 40, 380, 120], 0.0),        # nowhere near the model's dog: the most suspicious
    ([250, 60, 330, 140], 0.2308),     # shifted 50 px off it
    ([230, 60, 310, 140], 0.4545),     # shifted 30 px: the model's dog nearly fits
])
def test_an_unsupported_region_is_less_suspicious_the_nearer_the_models_box(annotated_dog, nearest_iou):
    """spurious / misplaced: `R_task * (1 - u)`, u the IoU of the model's nearest box."""
    suspect = task(99, regions([CAT, annotated_dog], ["cat", "dog"]),
                   [prediction(regions([CAT, DOG], ["cat", "dog"], scores=[0.9, 0.9]))])
    report = find_suspicious(read_export(_background() + [suspect], ONTOLOGY), LS, 7)
    (entry,) = [e for e in report["entries"] if e["task_id"] == 99 and e["region"]["source"] == "annotation"]
    k = report["thresholds"]["recall_prior"]  # the task's other region (the cat) is supported
    r_task = (1 + k * report["calibration"]["dog"]["recall"]) / (1 + k)
    assert entry["score"] == pytest.approx(r_task * (1 - nearest_iou), abs=1e-3)


@pytest.mark.parametrize("per_task,expected", [
    ([(5, 10)] * 20, 100.0),                             # every task at 0.5: differences no larger than chance
    ([(10, 10)] * 10 + [(0, 10)] * 10, 1.0),             # half the tasks all found, half none: trust each task
    ([(8, 10), (2, 10)] * 10, pytest.approx(2.59, abs=0.01)),  # p 0.5, tau^2 0.0947 - 0.025: 0.25 / 0.0697 - 1
    ([(5, 10)] * 4, 3.0),                                # too few tasks to tell: the default
    ([(0, 10)] * 10, 100.0),                             # the model supports nothing anywhere
])
def test_recall_prior_strength(per_task, expected):
    assert recall_prior_strength(per_task) == expected
