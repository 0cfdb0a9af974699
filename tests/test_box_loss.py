"""The box head's GIoU loss (`backend.models.box_loss`): deltas decoded against a unit proposal give the GIoU of the
image boxes, the loss's values, the heads that use it (training only), and a detector trained with it placing a box."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import generalized_box_iou

from backend.models.box_loss import GIOU_WEIGHT, GIoURoIHeads, decode_unit, giou_loss
from backend.models.detector import DetectorSpec, build_detector

WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # torchvision's box coder weights of the RoI heads


@pytest.mark.parametrize("deltas,box", [
    ((0, 0, 0, 0), (-0.5, -0.5, 0.5, 0.5)),  # the unit proposal itself
    ((10, 0, 0, 0), (0.5, -0.5, 1.5, 0.5)),  # shifted by one width
    ((0, -5, 0, 0), (-0.5, -1.0, 0.5, 0.0)),  # up by half a height
    ((0, 0, 5 * math.log(2), 0), (-1.0, -0.5, 1.0, 0.5)),  # twice as wide
    ((0, 0, 0, -5 * math.log(4)), (-0.5, -0.125, 0.5, 0.125)),  # a quarter as tall
], ids=["identity", "shift x", "shift y", "wider", "shorter"])
def test_decode_unit(deltas, box):
    np.testing.assert_allclose(decode_unit(torch.tensor([deltas], dtype=torch.float32), WEIGHTS)[0], box, atol=1e-6)


def test_unit_decoding_keeps_the_giou_of_the_image_boxes():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 400, (64, 2))
    proposals = torch.tensor(np.hstack([xy, xy + rng.uniform(5, 120, (64, 2))]), dtype=torch.float32)
    predicted, target = (torch.tensor(rng.normal(0, 2, (64, 4)), dtype=torch.float32) for _ in range(2))
    coder = BoxCoder(WEIGHTS)
    in_image = [coder.decode_single(d, proposals) for d in (predicted, target)]
    in_unit = [decode_unit(d, WEIGHTS) for d in (predicted, target)]
    np.testing.assert_allclose(generalized_box_iou(*in_unit).diagonal(), generalized_box_iou(*in_image).diagonal(),
                               atol=1e-4)


def _loss(predicted, target, labels):
    """giou_loss of one image: (N, 4) deltas of class 1 predicted and targeted, labels (N,)."""
    n = len(labels)
    logits = torch.zeros(n, 2)
    regression = torch.cat([torch.zeros(n, 4), torch.tensor(predicted, dtype=torch.float32)], dim=1)
    return giou_loss(logits, regression, [torch.tensor(labels)], [torch.tensor(target, dtype=torch.float32)], WEIGHTS)


@pytest.mark.parametrize("predicted,target,labels,box_loss", [
    ([[0, 0, 0, 0]], [[0, 0, 0, 0]], [1], 0.0),  # placed exactly
    ([[5, 0, 0, 0]], [[0, 0, 0, 0]], [1], GIOU_WEIGHT * (1 - 1 / 3)),  # shifted half a width: IoU 1/3, hull = union
    ([[20, 0, 0, 0]], [[0, 0, 0, 0]], [1], GIOU_WEIGHT * (1 + 1 / 3)),  # a width apart: IoU 0, hull 3 for union 2
    ([[5, 0, 0, 0], [9, 9, 9, 9]], [[0, 0, 0, 0], [0, 0, 0, 0]], [1, 0], GIOU_WEIGHT * (2 / 3) / 2),  # background
    ([[9, 9, 9, 9]], [[0, 0, 0, 0]], [0], 0.0),  # only background: no box term
], ids=["exact", "half a width off", "disjoint", "background sample ignored, still counted", "no positive"])
def test_giou_loss(predicted, target, labels, box_loss):
    classification, box = _loss(predicted, target, labels)
    assert box.item() == pytest.approx(box_loss, abs=1e-5)
    assert classification.item() == pytest.approx(F.cross_entropy(torch.zeros(len(labels), 2),
                                                                   torch.tensor(labels)).item())


@pytest.mark.parametrize("stored,heads", [({}, RoIHeads), ({"box_loss": "smooth_l1"}, RoIHeads),
                                          ({"box_loss": "giou"}, GIoURoIHeads)],
                         ids=["checkpoint without the field", "smooth L1", "GIoU"])
def test_the_spec_chooses_the_box_loss(stored, heads):
    spec = DetectorSpec.from_dict({**{k: v for k, v in DetectorSpec(1).as_dict().items() if k != "box_loss"},
                                   **stored})
    assert type(build_detector(spec, pretrained=False).roi_heads) is heads


def test_an_unknown_box_loss_is_refused():
    with pytest.raises(ValueError, match="box_loss must be one of"):
        DetectorSpec(1, box_loss="l2")


def _blob(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image = np.random.default_rng(seed).integers(0, 60, (100, 150, 3), dtype=np.uint8)
    image[38:70, 20:60] = 220
    return image, np.array([[20, 38, 60, 70]], np.float32), np.ones(1, np.int64)


SPEC = DetectorSpec(num_classes=1, min_size=120, max_size=512, train_sizes=(96,), stride4=False, frozen_blocks=16,
                    roi_batch=64, anchor_sizes=((24, 32), (40, 56), (72, 96)), box_loss="giou")


def test_giou_heads_train_like_torchvision_s_and_predict_the_same():
    from backend.training.cached_features import TapCache, cached_losses

    torch.manual_seed(0)
    giou = build_detector(SPEC, pretrained=False)
    smooth = build_detector(replace(SPEC, box_loss="smooth_l1"), pretrained=False)
    smooth.load_state_dict(giou.state_dict())
    items = [_blob(0), _blob(1)]
    for model in (giou, smooth):
        model.train()
    losses = [cached_losses(m, items, np.arange(2), np.random.default_rng(0), TapCache(2**26), False, "cpu")
              for m in (giou, smooth)]
    assert losses[0].keys() == losses[1].keys() and all(torch.isfinite(v) for v in losses[0].values())
    assert losses[0]["loss_box_reg"].requires_grad
    for model in (giou, smooth):
        model.eval()
    with torch.no_grad():
        images = [torch.from_numpy(items[0][0]).permute(2, 0, 1).float() / 255]
        (a,), (b,) = giou(images), smooth(images)
    torch.testing.assert_close(a["boxes"], b["boxes"])


def test_a_detector_trained_with_giou_places_the_box():
    from backend.core.detections import box_iou
    from backend.models.detector_io import predict
    from backend.training.detector import TrainConfig, train_detector

    torch.manual_seed(0)
    model = build_detector(SPEC)
    train_detector(model, [_blob(i) for i in range(4)], "cpu",
                   TrainConfig(epochs=100, batch_size=2, dihedral=True, lr=0.01,
                                time_budget_s=3600))  # the steps end it, not the clock
    (out,) = predict(model, [_blob(9)[0]], "cpu")
    best = int(np.argmax(out["scores"]))
    # IoU 0.85-0.95 here over seeds and thread counts, 0.78 once on loaded CI; untrained: 0.0
    assert out["scores"][best] > 0.5 and box_iou(out["boxes"][best:best + 1], _blob(9)[1])[0, 0] > 0.7


def test_new_versions_train_with_giou():
    from backend.core.params import TrainParams
    from backend.training.recipe import BOX_LOSS, fitted_spec

    spec = fitted_spec([np.zeros((128, 128, 3), np.uint8)], [np.array([[10, 10, 40, 40]], np.float32)], 1,
                       TrainParams())
    assert spec.box_loss == BOX_LOSS == "giou" and DetectorSpec.from_dict(spec.as_dict()) == spec
