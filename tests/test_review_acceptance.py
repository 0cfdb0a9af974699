"""Pre-label acceptance (table-driven): accepted / adjusted / relabelled / deleted / added, with regions made by
the real converters; per label, per model version, and which prediction a task started from."""

from collections import Counter

import pytest

from backend.review.acceptance import acceptance, region_outcomes
from backend.review.export import read_export
from tests.review_fixtures import BRUSH, CHOICE, ONTOLOGY, POLY, RECT, prediction, regions, task

B = [100, 100, 200, 200]  # a 100 x 100 px box; shifting it by d px in x gives IoU (100 - d) / (100 + d)


def shifted(d, box=B):
    return [box[0] + d, box[1], box[2] + d, box[3]]


CASES = [
    # name, predicted (boxes, labels, controls), annotated (boxes, labels, controls), expected outcomes
    ("identical box: accepted", ([B], ["cat"]), ([B], ["cat"]), {"accepted": 1}),
    ("moved 5 px, IoU 0.905: accepted", ([B], ["cat"]), ([shifted(5)], ["cat"]), {"accepted": 1}),
    ("moved 6 px, IoU 0.887: adjusted", ([B], ["cat"]), ([shifted(6)], ["cat"]), {"adjusted": 1}),
    ("moved 33 px, IoU 0.504: adjusted", ([B], ["cat"]), ([shifted(33)], ["cat"]), {"adjusted": 1}),
    ("moved 34 px, IoU 0.493: deleted + added", ([B], ["cat"]), ([shifted(34)], ["cat"]), {"deleted": 1, "added": 1}),
    ("same box, other label: relabelled", ([B], ["cat"]), ([B], ["dog"]), {"relabelled": 1}),
    ("moved 20 px, other label: relabelled", ([B], ["cat"]), ([shifted(20)], ["dog"]), {"relabelled": 1}),
    ("prediction removed: deleted", ([B], ["cat"]), ([], []), {"deleted": 1}),
    ("drawn by hand: added", ([], []), ([B], ["dog"]), {"added": 1}),
    ("nothing predicted, nothing drawn", ([], []), ([], []), {}),
    ("same label wins over a closer other label",
     ([B], ["cat"]), ([shifted(10), shifted(2)], ["cat", "dog"]), {"adjusted": 1, "added": 1}),
    ("two objects, one kept one relabelled, one added",
     ([B, [250, 50, 350, 150]], ["cat", "cat"]), ([B, [250, 50, 350, 150], [10, 10, 60, 60]], ["cat", "dog", "dog"]),
     {"accepted": 1, "relabelled": 1, "added": 1}),
    ("rectangle predicted, brush drawn: different controls never match",
     ([B], ["cat"], (RECT,)), ([B], ["cat"], (BRUSH,)), {"deleted": 1, "added": 1}),
    ("brush kept", ([B], ["cat"], (BRUSH,)), ([B], ["cat"], (BRUSH,)), {"accepted": 1}),
    ("polygon relabelled", ([B], ["cat"], (POLY,)), ([B], ["dog"], (POLY,)), {"relabelled": 1}),
    ("rectangle and brush of one object both kept", ([B], ["cat"], (RECT, BRUSH)), ([B], ["cat"], (RECT, BRUSH)),
     {"accepted": 2}),
]


def _results(spec):
    boxes, labels, controls = (*spec, (RECT,))[:3]
    masks = any(c.tag != "RectangleLabels" for c in controls)
    return regions(boxes, labels, controls, masks=masks)


@pytest.mark.parametrize("name,predicted,annotated,expected", CASES, ids=[c[0] for c in CASES])
def test_region_outcomes(name, predicted, annotated, expected):
    (t,) = read_export([task(1, _results(annotated), [prediction(_results(predicted))])], ONTOLOGY)
    outcomes = region_outcomes(t.prelabel().regions, t.chosen.regions)
    assert Counter(o.outcome for o in outcomes) == Counter(expected)
    report = acceptance([t])
    overall = report["overall"]
    assert {k: overall[k] for k in expected} == expected
    assert overall["predicted"] == len(predicted[0]) * len((*predicted, (RECT,))[2])
    assert overall["annotated"] == len(annotated[0]) * len((*annotated, (RECT,))[2])


CHOICE_CASES = [
    ("same choice: accepted", ["indoor"], ["indoor"], {"accepted": 1}),
    ("other choice: relabelled", ["indoor"], ["outdoor"], {"relabelled": 1}),
]


@pytest.mark.parametrize("name,predicted,annotated,expected", CHOICE_CASES, ids=[c[0] for c in CHOICE_CASES])
def test_choices_compare_as_whole_image_regions(name, predicted, annotated, expected):
    pred = regions([[0, 0, 10, 10]], predicted, (CHOICE,))
    ann = regions([[0, 0, 10, 10]], annotated, (CHOICE,))
    (t,) = read_export([task(1, ann, [prediction(pred)])], ONTOLOGY)
    assert Counter(o.outcome for o in region_outcomes(t.prelabel().regions, t.chosen.regions)) == Counter(expected)


def test_precision_recall_per_label_and_version():
    c1 = [250, 50, 350, 150]
    tasks = [
        # v1: 2 predicted (1 accepted, 1 deleted), 2 annotated (1 accepted, 1 added) → precision 0.5, recall 0.5
        task(1, regions([B, [10, 10, 60, 60]], ["cat", "dog"]), [prediction(regions([B, c1], ["cat", "cat"]), "v1")],
             lead_time=30),
        # v2: 2 predicted, both kept (one adjusted) → precision 1, recall 1
        task(2, regions([B, shifted(20, c1)], ["cat", "dog"]),
             [prediction(regions([B, c1], ["cat", "dog"]), "v2", created="2026-03-02T09:00:00Z")], lead_time=10),
        task(3, None, [prediction(regions([B], ["cat"]), "v2")]),  # not annotated: not counted
        task(4, regions([B], ["cat"]), []),  # annotated without prediction
    ]
    report = acceptance(read_export(tasks, ONTOLOGY))
    assert report["n_tasks"] == 2 and report["n_annotated_without_prelabel"] == 1
    assert report["thresholds"] == {"unchanged_iou": 0.9, "match_iou": 0.5}
    o = report["overall"]
    assert (o["predicted"], o["annotated"], o["accepted"], o["adjusted"], o["deleted"], o["added"]) == (4, 4, 2, 1, 1, 1)
    assert o["precision"] == 0.75 and o["recall"] == 0.75 and o["unchanged"] == 0.5
    versions = report["by_model_version"]
    assert [v["model_version"] for v in versions] == ["v1", "v2"]
    assert (versions[0]["precision"], versions[0]["recall"], versions[0]["precision_change"]) == (0.5, 0.5, None)
    assert (versions[1]["precision"], versions[1]["recall"], versions[1]["precision_change"]) == (1.0, 1.0, 0.5)
    assert (versions[0]["mean_lead_time_s"], versions[1]["mean_lead_time_s"]) == (30.0, 10.0)
    cat, dog = report["by_label"]["cat"], report["by_label"]["dog"]
    assert (cat["predicted"], cat["accepted"], cat["deleted"], cat["annotated"]) == (3, 2, 1, 2)
    assert (dog["predicted"], dog["adjusted"], dog["added"], dog["annotated"]) == (1, 1, 1, 2)
    assert cat["precision"] == pytest.approx(2 / 3, abs=1e-4) and dog["recall"] == 0.5


PRELABEL_CASES = [
    # name, predictions [(version, created)], annotation created, parent index, expected version (None: no prelabel)
    ("latest before the annotation", [("v1", "2026-03-01T00:00:00Z"), ("v2", "2026-03-01T12:00:00Z"),
                                      ("v3", "2026-03-03T00:00:00Z")], "2026-03-02T00:00:00Z", None, "v2"),
    ("parent_prediction wins", [("v1", "2026-03-01T00:00:00Z"), ("v2", "2026-03-01T12:00:00Z")],
     "2026-03-02T00:00:00Z", 0, "v1"),
    ("every prediction came later", [("v3", "2026-03-03T00:00:00Z")], "2026-03-02T00:00:00Z", None, None),
    ("times missing: the latest", [("v1", None), ("v2", None)], None, None, "v2"),
]


@pytest.mark.parametrize("name,preds,created,parent,expected", PRELABEL_CASES, ids=[c[0] for c in PRELABEL_CASES])
def test_prelabel_is_the_prediction_the_annotation_started_from(name, preds, created, parent, expected):
    results = regions([B], ["cat"])
    raw = task(7, results, [(results, v, 0.9, c) for v, c in preds], created=created,
               parent=None if parent is None else 7000 + parent)
    (t,) = read_export([raw], ONTOLOGY)
    chosen = t.prelabel()
    assert (chosen.model_version if chosen else None) == expected


def test_cancelled_annotations_and_ground_truth():
    results = regions([B], ["cat"])
    raw = task(1, results, [prediction(results)])
    raw["annotations"].append({**raw["annotations"][0], "id": 99, "result": [], "was_cancelled": True,
                               "updated_at": "2026-03-05T00:00:00Z"})
    (t,) = read_export([raw], ONTOLOGY)
    assert t.chosen.id == 10 and len(t.submitted) == 1
    raw["annotations"].append({**raw["annotations"][0], "id": 98, "result": [], "ground_truth": True,
                               "updated_at": "2026-03-01T00:00:00Z"})
    (t,) = read_export([raw], ONTOLOGY)
    assert t.chosen.id == 98


def test_malformed_regions_are_skipped_and_counted():
    results = regions([B], ["cat"]) + [{"type": "rectanglelabels", "from_name": "box", "original_width": 10,
                                        "original_height": 10, "value": {"x": 1}}]
    (t,) = read_export([task(1, results, [prediction(regions([B], ["cat"]))])], ONTOLOGY)
    assert len(t.chosen.regions) == 1 and t.chosen.regions.malformed == 1
    assert acceptance([t])["overall"]["accepted"] == 1
