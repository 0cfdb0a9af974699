"""LIME boxes with the real ImageNet EfficientNet-Lite0 weights on real photos (skimage.data, scikit-learn's and
matplotlib's sample photos) and composites of them."""

import cv2
import numpy as np
import pytest
import torch
from skimage import data

from backend.adapters.base import LazyModel
from backend.adapters.classifier import build_classifier
from backend.core.detections import box_iou
from backend.core.params import PredictParams
from backend.core.ontology import Control, Ontology
from backend.labelstudio.config import parse_label_config
from backend.pipelines.label_mapping import class_groups
from backend.pipelines.lime_boxes import LimeBoxesPipeline
from backend.pipelines.lime_explain import group_scores, sample_masks, superpixels
from backend.pipelines.lime_objects import lime_fit
from tests.lime_reference import lime_package_detections, mean_matched_iou
from tests.lime_scenes import CLASS_NAMES, LABELS, background, crop, photo

# The cat's head in chelsea (451x300): left ear at x~30 to right ear at x~400, top of head to chin off
# the bottom edge; read off the image (eyes at (170, 115) and (318, 135), nose at (262, 245)).
CAT_HEAD = np.array([[30, 0, 400, 300]], np.float32)
CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
          '<Label value="cat"/><Label value="cup"/><Label value="dog"/></RectangleLabels></View>')
PARAMS = PredictParams()  # the defaults: 256 samples, 80 superpixels, 3x3 windows


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


def pasted(background_name: str, items: list[tuple[str, int, int, int]]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A 1000 x 650 real background with object crops pasted at (x, y) and width w → image, boxes, labels."""
    canvas = background(background_name, (1000, 650))
    boxes, labels = [], []
    for name, x, y, width in items:
        image, label = crop(name)
        height = round(image.shape[0] * width / image.shape[1])
        canvas[y:y + height, x:x + width] = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        boxes.append((x, y, x + width, y + height))
        labels.append(label)
    return canvas, np.array(boxes, np.float32), labels


@pytest.mark.parametrize("background_name", ["grass", "gravel", pytest.param("brick", marks=pytest.mark.xfail(
    reason="known miss: on bricks the cup is found at some sample counts only (192), not at the default 256",
    strict=False))])
def test_second_object_the_whole_image_barely_shows_gets_its_box(classifier, pipeline, background_name):
    """A cup next to a big cat: the whole image gives "cup" under `class_threshold` (the old gate never explained
    it), the objects found in the perturbations and the windows box both."""
    image, boxes, labels = pasted(background_name, [("cat", 40, 60, 450), ("cup", 600, 300, 260)])
    onto = Ontology((Control("box", "RectangleLabels", "image", "image", LABELS),), class_names=CLASS_NAMES)
    groups = class_groups(onto.labels, classifier.class_names, onto.class_names)
    x = torch.nn.functional.interpolate(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255, size=(224, 224),
                                        mode="bilinear", antialias=True)
    assert float(classifier.probabilities(x)[0, list(groups["cup"])].sum()) < PARAMS.class_threshold
    (dets,) = pipeline.predict([image], onto, PARAMS)
    assert sorted(dets.labels) == ["cat", "cup"], dets
    for box, label in zip(boxes, labels):
        assert box_iou(box[None], dets.xyxy[[lab == label for lab in dets.labels]]).max() >= 0.5, (label, dets)


def test_photos_of_unlisted_objects_get_no_boxes(pipeline):
    onto = Ontology((Control("box", "RectangleLabels", "image", "image", LABELS),), class_names=CLASS_NAMES)
    images = [photo(name) for name in ("grace_hopper", "astronaut", "rocket", "china")]
    assert [len(dets) for dets in pipeline.predict(images, onto, PARAMS)] == [0, 0, 0, 0]


def test_masks_for_brush_configs_and_the_score_they_give(classifier, pipeline):
    onto = parse_label_config(CONFIG.replace("RectangleLabels", "BrushLabels"))
    (dets,) = pipeline.predict([data.chelsea()], onto, PARAMS)
    assert dets.masks is not None and dets.masks.shape[1:] == (300, 451) and dets.masks[0].mean() > 0.2
    # the cat fills the whole image, so no window holds its box: score = P(cat | image) x the box's share its
    # superpixels (the mask) cover
    x = torch.nn.functional.interpolate(torch.from_numpy(data.chelsea()).permute(2, 0, 1)[None].float() / 255,
                                        size=(224, 224), mode="bilinear", antialias=True)
    p_cat = float(classifier.probabilities(x)[0, 281:286].sum())
    x0, y0, x1, y1 = np.round(dets.xyxy[0]).astype(int)
    assert dets.scores[0] == pytest.approx(p_cat * dets.masks[0, y0:y1, x0:x1].mean(), abs=0.03)


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


def test_group_log_odds_stay_exact_where_probabilities_round_to_one():
    logits = torch.tensor([[30.0, 0.0, 0.0], [0.0, 2.0, 1.0]])
    probs, log_odds = group_scores(logits, torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]))
    assert probs[0, 0] == 1.0 and log_odds[0, 0] == pytest.approx(30 - np.log(2), abs=1e-4)
    expected = torch.log_softmax(logits[1], 0)
    assert probs[1, 1] == pytest.approx(float(expected[1:].exp().sum()))
    assert log_odds[1, 1] == pytest.approx(float(expected[1:].logsumexp(0) - expected[0]), abs=1e-5)


def test_local_model_is_limes_ridge_on_log_odds():
    from sklearn.linear_model import Ridge

    z = sample_masks(300, 12, seed=3).bool().numpy()
    log_odds = np.random.default_rng(0).normal(0, 5, size=(300, 2))
    model = lime_fit(z, log_odds)
    distance = 1 - (z @ np.ones(12)) / (np.linalg.norm(z, axis=1) * np.sqrt(12))
    weights = np.sqrt(np.exp(-(distance ** 2) / 0.25 ** 2))
    for j in range(2):
        reference = Ridge(alpha=1.0).fit(z, log_odds[:, j], sample_weight=weights)
        np.testing.assert_allclose(model.weights[j], reference.coef_, atol=1e-8)
        np.testing.assert_allclose(model.intercept[j], reference.intercept_, atol=1e-8)


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


@pytest.mark.parametrize("label,kept,dropped", [
    ("tree", (), ("tree frog, tree-frog",)),  # a tree frog is a frog: "tree" stays unmapped
    ("frog", ("tree frog, tree-frog",), ("frogmouth",)),
    ("cat", ("tiger cat", "tabby, tabby cat"), ("catamaran", "cat's-eye")),
    ("bottle", ("beer bottle", "water bottles"), ("bottlecap", "bottle opener")),
])
def test_label_matches_a_class_by_its_head_noun(label, kept, dropped):
    names = kept + dropped + ("unrelated",)
    groups = class_groups((label,), names, synonyms={})
    assert tuple(names[i] for i in groups.get(label, ())) == kept
