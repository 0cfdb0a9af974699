"""Pieces of the `trained` pipeline: which labels fall back to zero-shot, config subsets, merging regions."""

import numpy as np
import pytest

from backend.adapters.base import LazyModel
from backend.core.detections import Detections
from backend.core.params import PredictParams
from backend.labelstudio.config import parse_label_config
from backend.pipelines.base import Steps
from backend.pipelines.coverage import Coverage
from backend.pipelines.masks import box_masks
from backend.pipelines.trained import TrainedDetectorPipeline, unknown_labels

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


class _FixedDetector:
    """A detector that finds one box of every label it knows (the same boxes on every image)."""

    def __init__(self, labels):
        self.labels = labels

    def detect(self, images, threshold):
        boxes = np.array([[1 + 2 * i, 1, 2 + 2 * i, 3] for i in range(len(self.labels))], np.float32)
        return [Detections(boxes, np.full(len(boxes), 0.9), self.labels, (20, 10)) for _ in images]


class _FixedZeroShot(Steps):
    """A zero-shot pipeline that finds one (distinctively placed) box of every label of the ontology it is given."""

    name = "zeroshot"
    model_version = "zeroshot-1"

    def coverage(self, ontology, params):
        return Coverage(self.model_version, {label: "zero-shot" for label in ontology.labels}, {})

    def prepare(self, images, ontology, params):
        return images, ontology.labels

    def forward(self, work):
        return work

    def finish(self, work):
        images, labels = work
        boxes = np.array([[10 + i, 5, 12 + i, 9] for i in range(len(labels))], np.float32)
        return [Detections(boxes, np.full(len(boxes), 0.5), labels, (20, 10)) for _ in images]


SOURCES_CONFIG = """<View><Image name="image" value="$image"/>
<RectangleLabels name="box" toName="image"><Label value="car"/><Label value="sign"/><Label value="tree"/>
</RectangleLabels></View>"""


# labels the detector knows, the labels it leaves to zero-shot → (label, source) of every region served
@pytest.mark.parametrize("classes,chosen,fallback,expected", [
    (("car", "sign", "tree"), (), True, {("car", "det"), ("sign", "det"), ("tree", "det")}),
    (("car", "sign", "tree"), ("sign",), True, {("car", "det"), ("sign", "zs"), ("tree", "det")}),
    (("car",), ("car",), True, {("car", "zs"), ("sign", "zs"), ("tree", "zs")}),  # unknown labels: zero-shot too
    (("car", "sign"), (), True, {("car", "det"), ("sign", "det"), ("tree", "zs")}),
    # no zero-shot pipeline can run: the detector keeps every label it knows, unknown ones are not served
    (("car", "sign"), ("sign",), False, {("car", "det"), ("sign", "det")}),
])
def test_each_label_is_served_by_its_source_only(classes, chosen, fallback, expected):
    ontology = parse_label_config(SOURCES_CONFIG)
    unknown = unknown_labels(ontology, classes)
    chosen = chosen if fallback else ()
    fallback_labels = tuple(label for label in ontology.labels if label in unknown or label in chosen)
    pipeline = TrainedDetectorPipeline(LazyModel.loaded("detector", "v1", _FixedDetector(list(classes))), "v1",
                                       LazyModel.loaded("sam", "none", None), _FixedZeroShot() if fallback else None,
                                       fallback_labels, classes, chosen, {"car": "held-out AP50 0.60 vs 0.40 zero-shot"})
    (dets,) = pipeline.predict([np.zeros((10, 20, 3), np.uint8)], ontology, PredictParams(box_threshold=0.1))
    served = {(label, "det" if box[0] < 10 else "zs") for label, box in zip(dets.labels, dets.xyxy)}
    assert served == expected
    coverage = pipeline.coverage(ontology, PredictParams())
    assert set(coverage.predicted) == {label for label, _ in expected}
    if ("car", "det") in expected:
        assert "held-out AP50 0.60" in coverage.predicted["car"]
    assert pipeline.model_version == ("v1+zeroshot-1" if fallback_labels and fallback else "v1")


def test_fitted_score_cuts_per_label():
    ontology = parse_label_config(SOURCES_CONFIG)
    classes = ("car", "sign", "tree")
    pipeline = TrainedDetectorPipeline(LazyModel.loaded("detector", "v1", _FixedDetector(list(classes))), "v1",
                                       LazyModel.loaded("sam", "none", None), None, (), classes, (), {},
                                       {"car": 0.5, "sign": 0.95, "tree": 1.01})
    (dets,) = pipeline.predict([np.zeros((10, 20, 3), np.uint8)], ontology, PredictParams(box_threshold=0.99))
    assert dets.labels == ("car",)  # 0.9 >= 0.5; under sign's 0.95; tree never shown (cheaper to draw)
    coverage = pipeline.coverage(ontology, PredictParams())
    assert "car" in coverage.predicted and "drawing them" in coverage.missing["tree"]
