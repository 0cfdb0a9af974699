"""Detector groundwork: AP metrics (table-driven) and one CPU training step of the Faster R-CNN recipe."""

import time

import numpy as np
import pytest

from backend.training.metrics import detection_ap


def _p(boxes, scores, labels=None):
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    return {"boxes": boxes, "scores": np.array(scores, np.float32),
            "labels": np.array(labels if labels is not None else [1] * len(boxes))}


def _t(boxes, labels=None):
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    return {"boxes": boxes, "labels": np.array(labels if labels is not None else [1] * len(boxes))}


@pytest.mark.parametrize("preds,truths,ap50,ap", [
    ([_p([[0, 0, 10, 10]], [0.9])], [_t([[0, 0, 10, 10]])], 1.0, 1.0),
    ([_p([], [])], [_t([[0, 0, 10, 10]])], 0.0, 0.0),
    ([_p([[0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.8])], [_t([[0, 0, 10, 10]])], 1.0, 1.0),  # FP ranked last
    ([_p([[50, 50, 60, 60], [0, 0, 10, 10]], [0.9, 0.8])], [_t([[0, 0, 10, 10]])], 0.5, 0.5),  # FP ranked first
    ([_p([[0, 0, 10, 12]], [0.9])], [_t([[0, 0, 10, 10]])], 1.0, 0.7),  # IoU 0.833: hits at 0.50..0.80 (7 of 10)
    ([_p([[0, 0, 10, 10], [0, 0, 10, 10]], [0.9, 0.8])], [_t([[0, 0, 10, 10]])], 1.0, 1.0),  # duplicate = FP
])
def test_detection_ap(preds, truths, ap50, ap):
    result = detection_ap(preds, truths, classes=[1])
    assert result["ap50"] == pytest.approx(ap50, abs=1e-3) and result["ap"] == pytest.approx(ap, abs=1e-3)


def _box_image(box, size=(96, 128)):
    image = np.zeros((*size, 3), np.uint8)
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = 255
    return image


def test_augment_moves_boxes_with_the_pixels():
    """All 8 flip/transpose combinations occur, and in each the box recomputed from the transformed pixels
    equals the transformed box (pixel-exact, xyxy with exclusive max)."""
    from backend.training.detector import augment

    box = (10, 20, 50, 40)
    seen = set()
    for seed in range(40):
        out, boxes = augment(_box_image(box), np.array([box], np.float32), np.random.default_rng(seed), dihedral=True)
        ys, xs = np.nonzero(out[0].numpy())
        assert boxes.tolist() == [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]]
        seen.add((tuple(out.shape), tuple(boxes[0].tolist())))
    assert len(seen) == 8


def test_detector_trains_saves_loads_and_predicts_on_cpu(tmp_path):
    import torch

    from backend.models.detector import DetectorSpec, build_detector
    from backend.models.detector_io import load_detector, predict, save_detector
    from backend.training.detector import TrainConfig, train_detector

    rng = np.random.default_rng(0)
    items = []
    for _ in range(2):
        image = rng.integers(0, 60, (128, 128, 3), dtype=np.uint8)
        image[30:70, 40:90] = 220
        items.append((image, np.array([[40, 30, 90, 70]], np.float32), np.array([1])))
    spec = DetectorSpec(num_classes=1, min_size=128, max_size=128, train_sizes=(96,), tta_views=2)
    model = build_detector(spec)
    frozen = [p for p in model.backbone.stem.parameters()]
    assert frozen and not any(p.requires_grad for p in frozen)
    stem_before = frozen[0].detach().clone()
    stats = train_detector(model, items, "cpu", TrainConfig(epochs=1, batch_size=2))
    assert stats["steps"] == 1 and np.isfinite(stats["final_loss"])
    assert torch.equal(frozen[0], stem_before)  # frozen layers keep their ImageNet weights
    (out,) = predict(model, [items[0][0]], "cpu")
    assert out["boxes"].shape[1:] == (4,) and len(out["scores"]) == len(out["labels"]) == len(out["boxes"])
    assert (out["boxes"] >= 0).all() and (out["boxes"] <= 128).all() and (out["scores"] <= 1).all()

    save_detector(tmp_path, model, ["blob"], {"ap50": 0.0})
    loaded, classes = load_detector(tmp_path)
    (again,) = predict(loaded, [items[0][0]], "cpu")
    assert classes == ["blob"] and loaded.spec == spec
    np.testing.assert_allclose(again["boxes"], out["boxes"], atol=1e-4)
    (tmp_path / "detector.pt").write_bytes(b"truncated")
    with pytest.raises(ValueError, match="cannot read detector checkpoint"):
        load_detector(tmp_path)


@pytest.mark.parametrize("device, cpu_bf16, native, expected", [
    ("cuda", True, False, "cuda"),
    ("cuda:1", False, False, "cuda"),
    ("cpu", True, True, "cpu"),
    ("cpu", False, True, None),  # asked for float32
    ("cpu", True, False, None),  # no native bf16: emulated bf16 would be slower than float32
])
def test_autocast_device(monkeypatch, device, cpu_bf16, native, expected):
    import torch

    from backend.models.precision import autocast_device

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert autocast_device(device, cpu_bf16) == expected


def test_a_bf16_step_on_cached_features_keeps_float32_weights(monkeypatch):
    """The CPU bf16 path (forced on, whatever this CPU has): a finite loss; the trained weights move and stay
    float32."""
    import torch

    from backend.models.detector import DetectorSpec, build_detector
    from backend.training.detector import TrainConfig, train_detector

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    image = np.random.default_rng(0).integers(0, 60, (128, 128, 3), dtype=np.uint8)
    image[30:70, 40:90] = 220
    items = [(image, np.array([[40, 30, 90, 70]], np.float32), np.array([1]))] * 2
    model = build_detector(DetectorSpec(num_classes=1, min_size=128, max_size=128, stride4=False, frozen_blocks=16))
    head = model.roi_heads.box_predictor.cls_score.weight
    before = head.detach().clone()
    stats = train_detector(model, items, "cpu", TrainConfig(epochs=2, batch_size=2, cpu_bf16=True))
    assert stats["steps"] == 2 and np.isfinite(stats["final_loss"]) and stats["cached_taps"] >= 1
    assert head.dtype == torch.float32 and not torch.equal(head, before)


def test_training_pauses_do_not_count_against_its_time_budget():
    """`pause` (a training yielding the cores to model calls) runs before steps; the time budget counts training
    time only, so a run paused for seconds still trains for its whole budget."""
    from backend.models.detector import DetectorSpec, build_detector
    from backend.training.detector import TrainConfig, train_detector

    rng = np.random.default_rng(0)
    image = rng.integers(0, 60, (96, 96, 3), dtype=np.uint8)
    image[20:60, 30:70] = 220
    items = [(image, np.array([[30, 20, 70, 60]], np.float32), np.array([1]))] * 2
    model = build_detector(DetectorSpec(num_classes=1, min_size=96, max_size=96, train_sizes=(96,)))
    calls = []

    def pause():  # the first 6 steps wait 0.25 s each, as behind a re-prediction's chunks
        calls.append(1)
        if len(calls) > 6:
            return 0.0
        time.sleep(0.25)
        return 0.25

    budget = 1.5
    stats = train_detector(model, items, "cpu", TrainConfig(epochs=10_000, batch_size=2, time_budget_s=budget),
                           pause=pause)
    assert stats["paused_s"] == pytest.approx(0.25 * min(len(calls), 6))
    assert stats["paused_s"] >= 0.5  # the run went on after pausing
    assert stats["train_s"] >= budget  # the whole budget was spent training, the pauses on top of it
