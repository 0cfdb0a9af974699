"""Which video boxes of a request are the annotator's to carry forward (`backend.labelstudio.video_seeds`)."""

import pytest

from backend.core.ontology import Control
from backend.labelstudio.video_seeds import carried, seed_regions

CONTROL = Control(name="box", tag="VideoRectangle", to_name="video", image_key="video", labels=("cat", "cup"))


def box(region_id, frame=1, enabled=True, from_name="box", kind="videorectangle"):
    return {"id": region_id, "from_name": from_name, "to_name": "video", "type": kind,
            "value": {"labels": ["cat"], "sequence": [{"frame": frame, "x": 10, "y": 10, "width": 20, "height": 20,
                                                       "enabled": enabled}]}}


def item(*regions, updated="2026-12-01T10:00:00Z", cancelled=False):
    return {"result": list(regions), "updated_at": updated, "was_cancelled": cancelled}


SEED_CASES = [
    # (name, task, context, expected region ids)
    ("nothing", {}, None, []),
    ("context regions first", {"drafts": [item(box("d"))]}, {"result": [box("c")]}, ["c"]),
    ("context without video boxes → newest draft", {"drafts": [item(box("d"))], "annotations": [item(box("a"))]},
     {"result": []}, ["d"]),
    ("no draft → annotation", {"annotations": [item(box("a"))]}, None, ["a"]),
    ("newest draft wins", {"drafts": [item(box("old"), updated="2026-12-01T10:00:00Z"),
                                      item(box("new"), updated="2026-12-02T10:00:00Z")]}, None, ["new"]),
    ("same time → the last listed", {"annotations": [item(box("first")), item(box("second"))]}, None, ["second"]),
    ("cancelled annotations skipped", {"annotations": [item(box("kept"), updated="2026-12-01T10:00:00Z"),
                                                       item(box("skip"), updated="2026-12-09T10:00:00Z",
                                                            cancelled=True)]}, None, ["kept"]),
    ("other controls and types ignored", {"annotations": [item(box("other", from_name="elsewhere"),
                                                               box("rect", kind="rectanglelabels"), box("mine"))]},
     None, ["mine"]),
    ("a draft with no video box falls through to the annotation",
     {"drafts": [item(box("r", kind="rectanglelabels"))], "annotations": [item(box("a"))]}, None, ["a"]),
    ("malformed entries ignored", {"drafts": ["x", None, {"result": "nope"}], "annotations": [item({"type": "videorectangle"})]},
     {"result": "nope"}, []),
]


@pytest.mark.parametrize("name, task, context, expected", SEED_CASES, ids=[c[0] for c in SEED_CASES])
def test_seed_regions(name, task, context, expected):
    assert [r["id"] for r in seed_regions(task, context, CONTROL)] == expected


CARRIED_CASES = [
    ("enabled last keyframe", box("a"), True),
    ("enabled missing means enabled", {"value": {"sequence": [{"frame": 1, "x": 1, "y": 1, "width": 1, "height": 1}]}},
     True),
    ("ended by the annotator", box("a", enabled=False), False),
    ("no keyframes", {"value": {"sequence": []}}, False),
    ("the last by frame counts, not the last listed",
     {"value": {"sequence": [{"frame": 9, "enabled": False}, {"frame": 3, "enabled": True}]}}, False),
    ("an unreadable frame is left for the carrying to name", {"value": {"sequence": [{"frame": "x"}]}}, True),
]


@pytest.mark.parametrize("name, region, expected", CARRIED_CASES, ids=[c[0] for c in CARRIED_CASES])
def test_carried(name, region, expected):
    assert carried(region) is expected
