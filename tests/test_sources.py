"""Per-label source selection and the activation rule against zero-shot (`backend.training.sources`), from recorded
metrics: no training runs here."""

import math

import pytest

from backend.jobs.training import is_better
from backend.registry.versions import DETECTOR
from backend.training.sources import choose_sources, served_score, serves_better

NAN = math.nan
D, Z = "detector", "zero-shot"


# (detector AP50 per label, zero-shot AP50 per label, labels zero-shot covers, previous sources, held out?, expected)
@pytest.mark.parametrize("detector,zero_shot,covers,previous,held_out,expected", [
    ({"tree": 0.05}, {"tree": 0.0}, set(), None, True, {"tree": D}),  # zero-shot cannot predict it: any AP wins
    ({"tree": 0.0}, {"tree": 0.0}, set(), None, True, {"tree": D}),  # tie, zero-shot cannot predict it at all
    ({"cat": 0.3}, {"cat": 0.6}, {"cat"}, None, True, {"cat": Z}),  # zero-shot better: it keeps the label
    ({"cat": 0.6}, {"cat": 0.6}, {"cat"}, None, True, {"cat": Z}),  # tie, nothing before: zero-shot stays
    ({"cat": 0.6}, {"cat": 0.6}, {"cat"}, {"cat": D}, True, {"cat": D}),  # tie: what serves now stays
    ({"cat": 0.7}, {"cat": 0.6}, {"cat"}, None, True, {"cat": D}),
    ({"cat": 0.7, "cup": 0.2}, {"cat": 0.6, "cup": 0.5}, {"cat", "cup"}, None, True, {"cat": D, "cup": Z}),
    ({"cat": 0.7}, {"cat": 0.9}, set(), None, True, {"cat": D}),  # an AP for a label it does not cover is ignored
    ({"cat": NAN}, {"cat": NAN}, {"cat"}, {"cat": D}, True, {"cat": D}),  # no evidence: the previous choice
    ({"cat": NAN}, {"cat": NAN}, {"cat"}, None, True, {"cat": Z}),  # no evidence, no previous: zero-shot
    ({"tree": NAN}, {"tree": NAN}, set(), {"tree": Z}, True, {"tree": D}),  # zero-shot no longer covers it
    ({"cat": 0.9}, {"cat": 0.2}, {"cat"}, None, False, {"cat": Z}),  # scored on its training tasks: no evidence
    ({"cat": 0.9, "tree": 0.9}, {"cat": 0.2}, {"cat"}, {"cat": D}, False, {"cat": D, "tree": D}),
])
def test_choose_sources(detector, zero_shot, covers, previous, held_out, expected):
    assert choose_sources(detector, zero_shot, covers, previous, held_out) == expected


# (sources, detector AP per label, zero-shot AP per label, labels, served mean)
@pytest.mark.parametrize("sources,detector,zero_shot,labels,expected", [
    ({"cat": D, "cup": Z}, {"cat": 0.7, "cup": 0.2}, {"cat": 0.6, "cup": 0.5}, ["cat", "cup"], 0.6),
    ({}, {}, {"cat": 0.6, "cup": 0.5}, ["cat", "cup"], 0.55),  # nothing active: zero-shot serves all
    ({}, {}, {}, ["tree"], None),  # no evidence at all
    ({"tree": D}, {"tree": 0.4}, {"tree": 0.0}, ["tree"], 0.4),
    ({"cat": D}, {"cat": 0.7, "cup": NAN}, {"cat": 0.1, "cup": NAN}, ["cat", "cup"], 0.7),  # cup: no evidence
    ({"cat": D}, {"cat": 0.7}, {"cup": 0.5}, ["cat", "cup"], 0.6),  # cup unknown to the detector: zero-shot's
])
def test_served_score(sources, detector, zero_shot, labels, expected):
    assert served_score(sources, detector, zero_shot, labels) == expected


# recorded metrics of new versions (served by their sources, and what serves now on the same tasks) → activated?
@pytest.mark.parametrize("metrics,activated", [
    ({"served_ap50": 0.3, "served_ap": 0.1, "baseline_served_ap50": 0.0, "baseline_served_ap": 0.0}, True),
    # the first version of a project the zero-shot pipeline labels well: it serves no label better, stays inactive
    ({"ap50": 0.2, "served_ap50": 0.55, "served_ap": 0.2, "baseline_served_ap50": 0.55, "baseline_served_ap": 0.2},
     False),
    ({"served_ap50": 0.6, "served_ap": 0.2, "baseline_served_ap50": 0.55, "baseline_served_ap": 0.3}, True),
    ({"served_ap50": 0.55, "served_ap": 0.21, "baseline_served_ap50": 0.55, "baseline_served_ap": 0.2}, True),
    ({"served_ap50": 0.5, "served_ap": 0.9, "baseline_served_ap50": 0.55, "baseline_served_ap": 0.1}, False),
    ({"served_ap50": None, "served_ap": None, "baseline_served_ap50": None, "baseline_served_ap": None}, False),
    # a detector that beats an older detector but not the zero-shot pipeline on any label
    ({"ap50": 0.4, "baseline_ap50": 0.2, "served_ap50": 0.6, "served_ap": 0.2, "baseline_served_ap50": 0.6,
      "baseline_served_ap": 0.2}, False),
])
def test_activation_against_zero_shot(metrics, activated):
    assert serves_better(metrics) is activated
    assert is_better(DETECTOR, metrics) is activated


# by annotation time when the metrics have it: lower seconds to correct is better, a tie keeps what serves
@pytest.mark.parametrize("effort,activated", [
    ({"served_s": 120.0, "baseline_served_s": 300.0}, True),
    ({"served_s": 300.0, "baseline_served_s": 300.0}, False),  # e.g. both draw everything
    ({"served_s": 310.0, "baseline_served_s": 300.0}, False),  # a better AP50 that costs more to correct
])
def test_activation_by_annotation_time(effort, activated):
    metrics = {"effort": effort, "served_ap50": 0.9, "baseline_served_ap50": 0.1}
    assert serves_better(metrics) is activated
