"""Warm start of a detector version from the active one: weights carried over by name, predictor rows by label."""

import pytest
import torch

from backend.models.detector import DetectorSpec, build_detector
from backend.training.warm_start import BOX, CLS, class_rows, warm_start


@pytest.mark.parametrize("old,new,pairs", [
    (["a", "b"], ["a", "b"], [(0, 0), (1, 1), (2, 2)]),
    (["a", "b"], ["a", "b", "c"], [(0, 0), (1, 1), (2, 2)]),  # c is new: its rows stay fresh
    (["b", "c"], ["a", "b", "c"], [(0, 0), (2, 1), (3, 2)]),  # rows follow the label, not the index
    (["a"], ["z"], [(0, 0)]),  # nothing in common: background only
])
def test_class_rows(old, new, pairs):
    assert class_rows(old, new) == pairs


def test_warm_start_copies_by_label():
    torch.manual_seed(0)
    old = build_detector(DetectorSpec(num_classes=2, min_size=64, max_size=96), pretrained=False)
    new = build_detector(DetectorSpec(num_classes=3, min_size=64, max_size=96), pretrained=False)
    fresh_c = new.state_dict()[f"{CLS}.weight"][1].clone()
    report = warm_start(new, old.state_dict(), ["b", "c"], ["a", "b", "c"])
    got, src = new.state_dict(), old.state_dict()
    assert report["classes_kept"] == ["b", "c"] and report["skipped"] == []
    assert torch.equal(got["backbone.fpn.layer_blocks.0.0.weight"], src["backbone.fpn.layer_blocks.0.0.weight"])
    assert torch.equal(got[f"{CLS}.weight"][0], src[f"{CLS}.weight"][0])  # background
    assert torch.equal(got[f"{CLS}.weight"][2], src[f"{CLS}.weight"][1])  # b
    assert torch.equal(got[f"{BOX}.weight"][12:16], src[f"{BOX}.weight"][8:12])  # c
    assert torch.equal(got[f"{CLS}.weight"][1], fresh_c)  # a is new


def test_warm_start_skips_levels_that_moved():
    old = build_detector(DetectorSpec(num_classes=1, min_size=64, max_size=96, stride4=True), pretrained=False)
    new = build_detector(DetectorSpec(num_classes=1, min_size=64, max_size=96, stride4=False), pretrained=False)
    before = new.state_dict()["backbone.fpn.layer_blocks.0.0.weight"].clone()
    warm_start(new, old.state_dict(), ["a"], ["a"], skip=("backbone.fpn", "rpn"))
    assert torch.equal(new.state_dict()["backbone.fpn.layer_blocks.0.0.weight"], before)
