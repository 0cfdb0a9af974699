"""Cascade: a generic prompt's boxes named by the real EfficientNet-Lite0 classifier (crops of real photos),
and the grounded pipeline with tiny random-init Grounding DINO running the cascade end to end."""

import numpy as np
import pytest
from skimage import data
from skimage.transform import resize

from backend.adapters.base import LazyModel
from backend.adapters.classifier import build_classifier
from backend.adapters.grounding_dino import GroundingDinoDetector
from backend.adapters.sam import SamSegmenter
from backend.core.detections import Detections
from backend.core.errors import BadRequest
from backend.core.params import PredictParams
from backend.labelstudio.config import parse_label_config
from backend.pipelines.cascade import crop_batch, classify_regions
from backend.pipelines.grounded import GroundedPipeline
from tests.tiny_models import save_grounding_dino, save_sam

CONFIG = """<View><Image name="image" value="$image"/>
<RectangleLabels name="box" toName="image"><Label value="cat"/><Label value="cup"/><Label value="dog"/>
</RectangleLabels></View>"""


def _side_by_side() -> tuple[np.ndarray, np.ndarray]:
    """chelsea (cat) left, coffee (cup) right, both 300 px high; and their boxes (xyxy)."""
    cat = data.chelsea()
    cup = (resize(data.coffee(), (300, 400), anti_aliasing=True) * 255).astype(np.uint8)
    image = np.concatenate([cat, cup], axis=1)
    return image, np.array([[0, 0, cat.shape[1], 300], [cat.shape[1], 0, image.shape[1], 300]], np.float32)


@pytest.fixture(scope="module")
def classifier():
    return build_classifier("efficientnet-lite0", "cpu")


def test_crops_cover_the_box_with_context():
    image = np.zeros((100, 200, 3), np.uint8)
    image[20:40, 50:90] = 255
    crops = crop_batch(image, np.array([[50, 20, 90, 40], [0, 0, 1, 1]], np.float32), 32)
    assert crops.shape == (2, 3, 32, 32)
    inner = crops[0, :, 4:28, 4:28]  # the 10 % margin lies outside the bright box
    assert float(inner.mean()) > 0.95 and float(crops[0, :, 0, :].mean()) < 0.1


def test_classifier_names_generic_boxes(classifier):
    image, boxes = _side_by_side()
    generic = Detections(boxes, [0.9, 0.8], ["object", "object"], (image.shape[1], image.shape[0]))
    onto = parse_label_config(CONFIG)
    (named,) = classify_regions(classifier, [image], [generic], onto, PredictParams(class_threshold=0.15))
    assert named.labels == ("cat", "cup")
    assert (named.scores <= np.array([0.9, 0.8])).all() and (named.scores > 0).all()
    (strict,) = classify_regions(classifier, [image], [generic], onto, PredictParams(class_threshold=1.0))
    assert len(strict) == 0  # nobody is that sure: boxes dropped, not mislabelled


def test_unmatched_labels_are_a_clear_400(classifier):
    onto = parse_label_config(CONFIG.replace('"cat"', '"zzz"').replace('"cup"', '"yyy"').replace('"dog"', '"xxx"'))
    image, boxes = _side_by_side()
    generic = Detections(boxes, [0.9, 0.8], ["object"] * 2, (image.shape[1], image.shape[0]))
    with pytest.raises(BadRequest, match="cascade: none of the labels"):
        classify_regions(classifier, [image], [generic], onto, PredictParams())


def test_grounded_pipeline_runs_the_cascade(tmp_path, classifier):
    gd, sam = save_grounding_dino(tmp_path / "gd"), save_sam(tmp_path / "sam")
    seen = []

    class Recording(GroundingDinoDetector):
        def detect(self, images, prompts, *args):
            seen.append(list(prompts))
            return super().detect(images, prompts, *args)

    pipeline = GroundedPipeline(LazyModel("detector", str(gd), lambda: Recording(str(gd), "cpu")),
                                LazyModel("sam", str(sam), lambda: SamSegmenter(str(sam), "cpu", cache_size=2)),
                                LazyModel("classifier", "efficientnet-lite0", lambda: classifier))
    image, _ = _side_by_side()
    params = PredictParams(box_threshold=0.0, text_threshold=0.0, class_threshold=0.0, cascade_prompt="animal or cup")
    (dets,) = pipeline.predict([image], parse_label_config(CONFIG), params)
    assert seen == [["animal or cup"]]  # one generic prompt, not the label values
    assert len(dets) > 0 and set(dets.labels) <= {"cat", "cup", "dog"}
    with pytest.raises(BadRequest, match="needs a classifier"):
        GroundedPipeline(pipeline.detector, pipeline.sam).predict([image], parse_label_config(CONFIG), params)
