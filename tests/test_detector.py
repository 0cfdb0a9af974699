"""Detector groundwork: AP metrics (table-driven) and one CPU training step of the Faster R-CNN recipe."""

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


def test_detector_trains_and_predicts_on_cpu():
    from backend.training.detector import build_detector, predict, train_detector

    rng = np.random.default_rng(0)
    items = []
    for _ in range(2):
        image = rng.integers(0, 60, (128, 128, 3), dtype=np.uint8)
        image[30:70, 40:90] = 220
        items.append((image, np.array([[40, 30, 90, 70]], np.float32), np.array([1])))
    model = build_detector(num_classes=1, min_size=128, max_size=128)
    stats = train_detector(model, items, "cpu", epochs=1, batch_size=2)
    assert stats["steps"] == 1 and np.isfinite(stats["final_loss"])
    (out,) = predict(model, [items[0][0]], "cpu")
    assert out["boxes"].shape[1:] == (4,) and len(out["scores"]) == len(out["labels"]) == len(out["boxes"])
