"""LIME boxes with the real ImageNet EfficientNet-Lite0 weights on real photos (skimage.data)."""

import numpy as np
import pytest
import torch
from skimage import data

from backend.adapters.base import LazyModel
from backend.adapters.classifier import build_classifier
from backend.core.detections import box_iou
from backend.core.params import PredictParams
from backend.labelstudio.config import parse_label_config
from backend.pipelines.label_mapping import class_groups
from backend.pipelines.lime_boxes import LimeBoxesPipeline, components_to_boxes, select_superpixels
from backend.pipelines.lime_explain import ridge_weights, sample_masks, superpixels
from tests.lime_reference import lime_package_detections, mean_matched_iou

# The cat's head in chelsea (451x300): left ear at x~30 to right ear at x~400, top of head to chin off
# the bottom edge; read off the image (eyes at (170, 115) and (318, 135), nose at (262, 245)).
CAT_HEAD = np.array([[30, 0, 400, 300]], np.float32)
CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
          '<Label value="cat"/><Label value="cup"/><Label value="dog"/></RectangleLabels></View>')
PARAMS = PredictParams(num_samples=192)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    return build_classifier("efficientnet-lite0", "cpu", tmp_path_factory.mktemp("onnx"))


@pytest.fixture(scope="module")
def pipeline(classifier):
    return LimeBoxesPipeline(LazyModel("classifier", "efficientnet-lite0", lambda: classifier))


def cat_and_cup():
    canvas = np.full((700, 1000, 3), 255, np.uint8)
    canvas[0:300, 0:451] = data.chelsea()
    canvas[300:700, 470:1000] = data.coffee()[:400, 50:580]
    return canvas


def two_cats():
    canvas = np.full((320, 940, 3), 255, np.uint8)
    canvas[10:310, 10:461] = data.chelsea()
    canvas[10:310, 480:931] = data.chelsea()[:, ::-1]
    return canvas


def test_classifier_knows_the_photos(classifier):
    x = torch.from_numpy(np.stack([data.chelsea()[:, :300], data.coffee()[:300, :300]])).permute(0, 3, 1, 2) / 255.0
    x = torch.nn.functional.interpolate(x.float(), size=(224, 224), mode="bilinear", antialias=True)
    top = classifier.probabilities(x).argmax(dim=1).tolist()
    assert classifier.class_names[top[0]] in ("tabby", "tiger cat", "Egyptian cat")
    assert classifier.class_names[top[1]] in ("espresso", "cup", "coffee mug")
    assert classifier.engine == "onnxruntime"


def test_cat_box_covers_the_head(pipeline):
    onto = parse_label_config(CONFIG)
    (dets,) = pipeline.predict([data.chelsea()], onto, PARAMS)
    assert set(dets.labels) == {"cat"}
    assert box_iou(dets.xyxy, CAT_HEAD).max() >= 0.5
    assert dets.scores.max() > 0.5


@pytest.mark.parametrize("image,expected", [
    (cat_and_cup, {"cat": [(0, 0, 451, 300)], "cup": [(470, 300, 1000, 700)]}),
    (two_cats, {"cat": [(10, 10, 461, 310), (480, 10, 931, 310)]}),
], ids=["cat and cup", "two cats"])
def test_several_objects_give_several_boxes(pipeline, image, expected):
    onto = parse_label_config(CONFIG)
    (dets,) = pipeline.predict([image()], onto, PARAMS)
    for label, boxes in expected.items():
        found = dets.xyxy[[lab == label for lab in dets.labels]]
        assert len(found) == len(boxes), (label, dets)
        iou = box_iou(np.array(boxes, np.float32), found)
        assert (iou.max(axis=1) >= 0.5).all(), (label, found)
    assert set(dets.labels) == set(expected)


def test_masks_for_brush_configs(pipeline):
    onto = parse_label_config(CONFIG.replace("RectangleLabels", "BrushLabels"))
    (dets,) = pipeline.predict([data.chelsea()], onto, PARAMS)
    assert dets.masks is not None and dets.masks.shape[1:] == (300, 451) and dets.masks[0].mean() > 0.2


def test_agreement_with_lime_package(classifier, pipeline):
    """Same classifier, superpixels, samples (lime's own sampler) and box rule: the same boxes."""
    params = PredictParams(num_samples=256)
    onto = parse_label_config(CONFIG)
    groups = class_groups(onto.labels, classifier.class_names)
    images = [data.chelsea(), cat_and_cup(), two_cats()]
    ours = pipeline.predict(images, onto, params)
    ious = [mean_matched_iou(mine, lime_package_detections(classifier, image, superpixels(image, params.superpixels),
                                                           groups, params, seed=0))
            for mine, image in zip(ours, images)]
    assert np.mean(ious) >= 0.7, ious


def test_ridge_matches_sklearn():
    from sklearn.linear_model import Ridge

    z = sample_masks(300, 12, seed=3)
    y = torch.rand(300, 2, dtype=torch.float64)
    ours = ridge_weights(z, y).numpy()
    distance = 1 - (z.numpy() @ np.ones(12)) / (np.linalg.norm(z.numpy(), axis=1) * np.sqrt(12))
    weights = np.sqrt(np.exp(-(distance ** 2) / 0.25 ** 2))
    for j in range(2):
        reference = Ridge(alpha=1.0).fit(z.numpy(), y[:, j].numpy(), sample_weight=weights).coef_
        np.testing.assert_allclose(ours[j], reference, atol=1e-6)


def test_box_rule_selects_top_positive_superpixels_and_splits_groups():
    weights = np.array([0.9, -0.5, 0.5, 0.1, 0.05, 0.8])
    assert select_superpixels(weights, 0.25, 10).tolist() == [0, 5, 2]
    assert select_superpixels(weights, 0.25, 2).tolist() == [0, 5]
    assert select_superpixels(-np.abs(weights), 0.25, 10).size == 0
    segments = np.zeros((40, 40), np.int32)
    segments[:, 20:] = 1
    segments[:, 35:] = 2
    selected = np.isin(segments, [0, 2])
    boxes = components_to_boxes(selected, segments, np.array([1.0, 0.0, 0.5]), (400, 400))
    assert sorted(box.tolist() for box, _, _ in boxes) == [[0, 0, 200, 400], [350, 0, 400, 400]]
    assert sorted(strength for _, strength, _ in boxes) == [0.5, 1.0]


@pytest.mark.parametrize("labels,expected", [
    (("cat",), {"cat": (281, 282, 283, 284, 285)}),
    (("apple",), {"apple": (948,)}),
    (("goldfish",), {"goldfish": (1,)}),
    (("bottle",), {"bottle": (440, 720, 737, 898, 907)}),
    (("unicornium",), {}),
])
def test_label_to_imagenet_classes(classifier, labels, expected):
    assert class_groups(labels, classifier.class_names) == expected


def test_explicit_classes_win(classifier):
    assert class_groups(("kitty",), classifier.class_names, {"kitty": ("tabby", "Persian cat", "nope")}) == \
        {"kitty": (281, 283)}
