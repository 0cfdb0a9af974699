"""Pieces of the `trained` pipeline: which labels fall back to zero-shot, config subsets, merging regions."""

import numpy as np
import pytest

from backend.core.detections import Detections
from backend.labelstudio.config import parse_label_config
from backend.pipelines.masks import box_masks
from backend.pipelines.trained import unknown_labels

CONFIG = """<View><Image name="image" value="$image"/>
<RectangleLabels name="box" toName="image"><Label value="car"/><Label value="sign"/></RectangleLabels>
<BrushLabels name="brush" toName="image"><Label value="road"/></BrushLabels>
<Choices name="scene" toName="image"><Choice value="urban"/></Choices></View>"""


@pytest.mark.parametrize("classes,expected", [
    (["car", "sign", "road"], ()),
    (["car"], ("sign", "road")),
    ([], ("car", "sign", "road")),
    (["car", "truck"], ("sign", "road")),  # classes the config dropped do not matter; Choices never fall back
])
def test_unknown_labels(classes, expected):
    assert unknown_labels(parse_label_config(CONFIG), classes) == expected


def test_restricted_ontology_keeps_only_the_asked_labels():
    ontology = parse_label_config(CONFIG).restricted_to({"sign", "urban"})
    assert [(c.name, c.labels) for c in ontology.controls] == [("box", ("sign",)), ("scene", ("urban",))]
    assert not ontology.wants_masks


def _dets(boxes, labels, masks=False):
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    d = Detections(boxes, np.ones(len(boxes)), labels, (20, 10))
    return box_masks(d) if masks else d


def test_box_masks_fill_each_box():
    d = box_masks(_dets([[2, 1, 5, 4]], ["car"]))
    assert d.masks.shape == (1, 10, 20) and d.masks.sum() == 9 and d.masks[0, 1:4, 2:5].all()


@pytest.mark.parametrize("with_masks,expect_masks", [((True, True), True), ((True, False), False)])
def test_concat_keeps_masks_only_when_every_part_has_them(with_masks, expect_masks):
    parts = [_dets([[0, 0, 4, 4]], ["car"], with_masks[0]), _dets([[5, 5, 9, 9], [1, 1, 2, 2]], ["road", "sign"],
                                                                  with_masks[1])]
    merged = Detections.concat(parts)
    assert merged.labels == ("car", "road", "sign") and len(merged.xyxy) == 3
    assert (merged.masks is not None) == expect_masks
