"""Test-time fusion over views of the backbone maps (`backend.models.map_views`): one view is the image path's
prediction, every view maps its boxes back onto the object (padding, scale, transposes), `predict` picks it for a
detector with a frozen prefix, and the recipe's default views are those the detector trained on, at its training
scales, in bf16 where the hardware has it, with the spec's number of proposals."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from backend.core.detections import box_iou
from backend.core.params import TrainParams
from backend.models.detector import DetectorSpec, build_detector
from backend.models.detector_io import _predict_views, predict
from backend.models.map_views import map_view_detections, predict_map_views
from backend.training.detector import TrainConfig, train_detector
from backend.training.recipe import fused_views

BOX = np.array([[20, 38, 60, 70]], np.float32)  # off-centre in a 100 x 150 image: every flip moves it


def _blob(seed: int, height: int = 100, width: int = 150) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image = np.random.default_rng(seed).integers(0, 60, (height, width, 3), dtype=np.uint8)
    x1, y1, x2, y2 = BOX[0].astype(int)
    image[y1:y2, x1:x2] = 220
    return image, BOX.copy(), np.ones(1, np.int64)


@pytest.fixture(scope="module")
def blob_detector():
    """A cached-recipe detector (every block frozen, taps cached) trained on one blob in its 8 dihedral views; its
    inference scale (120 px) pads the 100 x 150 image's 120 x 180 maps to 128 x 192."""
    spec = DetectorSpec(num_classes=1, min_size=120, max_size=512, train_sizes=(96,), stride4=False,
                        frozen_blocks=16, roi_batch=64, anchor_sizes=((24, 32), (40, 56), (72, 96)))
    torch.manual_seed(0)  # the untrained head's init: the same whichever tests ran before in this process
    model = build_detector(spec)
    assert model.backbone.cacheable
    train_detector(model, [_blob(i) for i in range(4)], "cpu",
                   TrainConfig(epochs=100, batch_size=2, dihedral=True, lr=0.01, time_budget_s=3600))
    return model


def test_one_map_view_is_the_image_prediction(blob_detector):
    image = _blob(7)[0]
    (plain,) = _predict_views(blob_detector, [image], "cpu", 1)
    fused = predict_map_views(blob_detector, image, 1, "cpu")
    # the same network on the same maps: the same best detection (the map path clips boxes to the padded view before
    # the box head's NMS, the image path to the resized image, so the runners-up may differ at the borders)
    assert fused["scores"][0] == pytest.approx(plain["scores"][0], abs=1e-3)
    assert box_iou(fused["boxes"][:1], plain["boxes"][:1])[0, 0] > 0.99
    assert box_iou(fused["boxes"][:1], BOX)[0, 0] > 0.7


def test_every_map_view_finds_the_object_where_it_is(blob_detector):
    # each view's boxes come back through its flips and turns, the padding (the maps are 128 x 192 for a 120 x 180
    # image) and the scale: a wrong width, or an upright size for a transposed view, moves or clips them (IoU 0.56-0.61
    # with the width 12 px off; 0 or 0.74 with an upright size; the right code 0.87-0.91 at worst over 5 init seeds;
    # 50 epochs left 0.63-0.87, too close to the bound for a loaded CI machine's thread timing)
    for k, found in enumerate(map_view_detections(blob_detector, _blob(7)[0], 8, "cpu")):
        assert box_iou(found["boxes"][:1], BOX)[0, 0] > 0.7, k


@pytest.mark.parametrize("views", [2, 4, 8])
def test_fused_map_views_land_on_the_object(blob_detector, views):
    image = _blob(7)[0]
    fused = predict_map_views(blob_detector, image, views, "cpu")
    single = predict_map_views(blob_detector, image, 1, "cpu")
    assert box_iou(fused["boxes"][:1], BOX)[0, 0] > 0.7
    # every view found the blob in the same place: one cluster, its score not damped by views that missed it
    assert fused["scores"][0] > 0.9 * single["scores"][0]
    assert (fused["boxes"] >= 0).all() and (fused["boxes"][:, [0, 2]] <= 150).all()
    assert (fused["boxes"][:, [1, 3]] <= 100).all()


def test_predict_fuses_map_views_for_a_cached_recipe_and_image_views_otherwise(blob_detector, monkeypatch):
    import backend.models.detector_io as io

    calls = []
    monkeypatch.setattr(io, "predict_map_views",
                        lambda model, image, views, device, scales=(): calls.append(views) or {})
    blob_detector.spec = replace(blob_detector.spec, tta_views=4)
    try:
        predict(blob_detector, [_blob(1)[0], _blob(2)[0]], "cpu")
        assert calls == [4, 4]
        unfrozen = build_detector(DetectorSpec(num_classes=1, min_size=64, max_size=128, frozen_blocks=0,
                                               tta_views=2), pretrained=False)
        assert not unfrozen.backbone.cacheable
        (out,) = predict(unfrozen, [_blob(3)[0]], "cpu")
        assert calls == [4, 4] and set(out) == {"boxes", "scores", "labels"}
    finally:
        blob_detector.spec = replace(blob_detector.spec, tta_views=1)


@pytest.mark.parametrize("augment, tta_views, expected", [
    ("flip", 0, 2),  # the default: the views it trained on
    ("dihedral", 0, 8),
    ("dihedral", 1, 1),  # asked for none
    ("flip", 4, 4),
])
def test_fused_views_default_to_the_training_views(augment, tta_views, expected):
    assert fused_views(TrainParams(augment=augment, tta_views=tta_views)) == expected


@pytest.mark.parametrize("views, scales", [(1, (96,)), (2, (96, 144)), (8, (96, 144))])
def test_views_at_further_scales_land_on_the_object_and_count_in_the_fusion(blob_detector, views, scales):
    image = _blob(7)[0]
    for size in scales:  # each scale on its own finds the blob where it is (boxes mapped back through that scale)
        for found in map_view_detections(blob_detector, image, views, "cpu", size):
            confident = found["scores"] >= 0.5 * found["scores"].max()
            assert box_iou(found["boxes"][confident], BOX).max() > 0.6, size
        at_default = map_view_detections(blob_detector, image, 1, "cpu")[0]
        assert not np.array_equal(map_view_detections(blob_detector, image, 1, "cpu", size)[0]["boxes"],
                                  at_default["boxes"])  # the backbone ran at that scale
    fused = predict_map_views(blob_detector, image, views, "cpu", scales)
    assert box_iou(fused["boxes"][:1], BOX)[0, 0] > 0.7
    # a box found in every view at every scale keeps its score (fused over views x scales, not damped)
    assert fused["scores"][0] > 0.7 * predict_map_views(blob_detector, image, views, "cpu")["scores"][0]


def test_predict_fuses_the_spec_scales_even_with_one_view(blob_detector, monkeypatch):
    import backend.models.detector_io as io

    calls = []
    monkeypatch.setattr(io, "predict_map_views",
                        lambda model, image, views, device, scales=(): calls.append((views, scales)) or {})
    blob_detector.spec = replace(blob_detector.spec, tta_scales=(96, 144))
    try:
        predict(blob_detector, [_blob(1)[0]], "cpu")
        assert calls == [(1, (96, 144))]
    finally:
        blob_detector.spec = replace(blob_detector.spec, tta_scales=())


@pytest.mark.parametrize("augment,tta_views,tta_scales,fused,proposals", [
    ("dihedral", 0, 0, True, 300),   # the default with 8 views: three scales, 300 proposals each
    ("flip", 0, 0, False, 1000),     # the default with 2 views: one scale, torchvision's 1,000
    ("flip", 0, 3, True, 300),       # asked for
    ("dihedral", 0, 1, False, 1000),
    ("flip", 8, 0, True, 300),       # 8 views asked for: three scales by default
])
def test_the_recipe_fuses_the_training_scales_in_bf16_with_fewer_proposals(augment, tta_views, tta_scales, fused,
                                                                          proposals):
    from backend.training.recipe import SCALED_PROPOSALS, fitted_spec

    assert TrainParams().tta_scales == 0 and SCALED_PROPOSALS == 300
    images = [np.zeros((128, 128, 3), np.uint8)] * 2
    boxes = [np.array([[10, 10, 40, 40]], np.float32)] * 2
    spec = fitted_spec(images, boxes, 1, TrainParams(augment=augment, tta_views=tta_views, tta_scales=tta_scales))
    assert spec.tta_scales == (spec.train_sizes if fused else ())
    assert spec.test_proposals == proposals and spec.bf16_inference
    assert DetectorSpec.from_dict(spec.as_dict()) == spec


def test_old_checkpoints_predict_at_one_scale_in_float32_with_1000_proposals():
    older = {k: v for k, v in DetectorSpec(1).as_dict().items()
             if k not in ("tta_scales", "test_proposals", "bf16_inference")}
    spec = DetectorSpec.from_dict(older)
    assert (spec.tta_scales, spec.test_proposals, spec.bf16_inference) == ((), 1000, False)
    assert build_detector(spec, pretrained=False).eval().rpn.post_nms_top_n() == 1000


A, DUP, NEXT, FAR = [0, 0, 10, 10], [0, 0, 10, 5], [6, 0, 16, 10], [50, 50, 60, 60]  # DUP: IoU 0.5 with A; NEXT: 0.25
# (case, boxes, scores, labels, sigma, expected scores in input order)
SOFT_NMS_CASES = [
    ("off", [A, DUP], [0.9, 0.8], [1, 1], 0.0, [0.9, 0.8]),
    ("apart: unchanged", [A, FAR], [0.9, 0.8], [1, 1], 0.1, [0.9, 0.8]),
    ("a duplicate sinks", [A, DUP], [0.9, 0.8], [1, 1], 0.1, [0.9, 0.8 * np.exp(-0.25 / 0.1)]),
    ("a neighbour keeps most", [A, NEXT], [0.9, 0.8], [1, 1], 0.1, [0.9, 0.8 * np.exp(-0.0625 / 0.1)]),
    ("other labels untouched", [A, DUP], [0.9, 0.8], [1, 2], 0.1, [0.9, 0.8]),
    # A first decays both; NEXT (0.7 e^-0.125 = 0.62) then beats DUP (0.8 e^-0.5 = 0.49) and decays it (IoU 20 / 130)
    ("decays follow the new order", [A, DUP, NEXT], [0.9, 0.8, 0.7], [1, 1, 1], 0.5,
     [0.9, 0.8 * np.exp(-0.25 / 0.5) * np.exp(-(20 / 130) ** 2 / 0.5), 0.7 * np.exp(-0.0625 / 0.5)]),
]


@pytest.mark.parametrize("case, boxes, scores, labels, sigma, expected", SOFT_NMS_CASES,
                         ids=[c[0] for c in SOFT_NMS_CASES])
def test_soft_nms(case, boxes, scores, labels, sigma, expected):
    from backend.models.tta import soft_nms

    found = {"boxes": np.array(boxes, np.float32), "scores": np.array(scores, np.float32),
             "labels": np.array(labels, np.int64)}
    out = soft_nms(found, sigma)
    assert np.all(np.diff(out["scores"]) <= 0)  # sorted by the new score
    by_box = {(tuple(b), int(l)): float(s) for b, s, l in zip(out["boxes"].tolist(), out["scores"], out["labels"])}
    got = [by_box[(tuple(float(v) for v in b), l)] for b, l in zip(boxes, labels)]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_predict_applies_the_spec_soft_nms(blob_detector):
    from backend.models.tta import soft_nms

    image = _blob(3)[0]
    (plain,) = predict(blob_detector, [image], "cpu")
    blob_detector.spec = replace(blob_detector.spec, soft_nms_sigma=0.1)
    try:
        (softened,) = predict(blob_detector, [image], "cpu")
    finally:
        blob_detector.spec = replace(blob_detector.spec, soft_nms_sigma=0.0)
    expected = soft_nms(plain, 0.1)
    np.testing.assert_allclose(softened["scores"], expected["scores"], rtol=1e-5)
    np.testing.assert_allclose(softened["boxes"], expected["boxes"])


def test_new_versions_use_soft_nms_and_old_checkpoints_do_not():
    from backend.training.recipe import SOFT_NMS_SIGMA, fitted_spec

    spec = fitted_spec([np.zeros((128, 128, 3), np.uint8)], [np.array([[10, 10, 40, 40]], np.float32)], 1,
                       TrainParams())
    assert spec.soft_nms_sigma == SOFT_NMS_SIGMA > 0 and DetectorSpec.from_dict(spec.as_dict()) == spec
    older = {k: v for k, v in spec.as_dict().items() if k != "soft_nms_sigma"}  # a checkpoint written before it
    assert DetectorSpec.from_dict(older).soft_nms_sigma == 0


@pytest.mark.parametrize("stored,share", [({}, 0.25), ({"roi_positive_fraction": 0.5}, 0.5)],
                         ids=["checkpoint without the field: torchvision's share", "a share set in the spec"])
def test_the_box_head_learns_from_the_spec_s_share_of_positive_rois(stored, share):
    spec = DetectorSpec.from_dict({**{k: v for k, v in DetectorSpec(1).as_dict().items()
                                      if k != "roi_positive_fraction"}, **stored})
    assert spec.roi_positive_fraction == share
    assert build_detector(spec, pretrained=False).roi_heads.fg_bg_sampler.positive_fraction == share


def test_zero_proposals_are_refused():
    with pytest.raises(ValueError, match="test_proposals"):
        DetectorSpec(1, test_proposals=0)


def _box_head_dtypes(model) -> tuple[list, object]:
    seen = []
    handle = model.roi_heads.box_head.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    return seen, handle


@pytest.mark.parametrize("bf16_inference,native,expected", [
    (True, True, torch.bfloat16),    # asked and the hardware has it
    (True, False, torch.float32),    # asked, but emulated bf16 would be slower: float32
    (False, True, torch.float32),    # an old checkpoint: float32 wherever it runs
])
def test_predict_runs_the_network_in_bf16_only_where_the_spec_and_the_hardware_allow(
        blob_detector, monkeypatch, bf16_inference, native, expected):
    import backend.models.detector_io as detector_io

    monkeypatch.setattr(detector_io, "autocast_device", lambda device, cpu_bf16: "cpu" if native and cpu_bf16 else None)
    image = _blob(3)[0]
    (float32,) = predict(blob_detector, [image], "cpu")
    seen, handle = _box_head_dtypes(blob_detector)
    blob_detector.spec = replace(blob_detector.spec, bf16_inference=bf16_inference)
    try:
        (found,) = predict(blob_detector, [image], "cpu")
    finally:
        blob_detector.spec = replace(blob_detector.spec, bf16_inference=False)
        handle.remove()
    assert seen and set(seen) == {expected}
    assert found["boxes"].dtype == np.float32 and found["scores"].dtype == np.float32
    # bf16 keeps the detection: on the blob, nearly the float32 score (the float32 box's IoU with it is 0.87-1.0)
    assert box_iou(found["boxes"][:1], BOX)[0, 0] > 0.7
    assert box_iou(found["boxes"][:1], float32["boxes"][:1])[0, 0] > 0.75
    assert found["scores"][0] == pytest.approx(float32["scores"][0], abs=0.05)


@pytest.mark.parametrize("proposals", [1, 5])
def test_predict_reads_the_spec_s_proposals_each_call(blob_detector, proposals):
    seen = []
    handle = blob_detector.roi_heads.box_roi_pool.register_forward_hook(
        lambda module, inputs, output: seen.append(output.shape[0]))
    blob_detector.spec = replace(blob_detector.spec, test_proposals=proposals)
    try:
        predict(blob_detector, [_blob(3)[0]], "cpu")
    finally:
        blob_detector.spec = replace(blob_detector.spec, test_proposals=1000)
        handle.remove()
    assert seen and max(seen) <= proposals  # one image, one view: the box head pools at most that many regions
    predict(blob_detector, [_blob(3)[0]], "cpu")
    assert blob_detector.rpn.post_nms_top_n() == 1000  # the next call, with the spec restored, reads it again
