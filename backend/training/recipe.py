"""The detector a project gets, fitted to its data: the working scale (shorter image side) and the anchor sizes.

- Scale: the smallest boxes (5th percentile of sqrt(w * h)) should reach `SMALL_BOX_PX` pixels; so a project of small
  tiles with small objects is upscaled only as far as needed and one of large objects is downscaled (never below
  `MIN_SIDE` nor the images' own shorter side, never above `train_image_size`). Fewer pixels: more epochs in the same
  CPU budget.
- Budget: `time_budget`, growing with the training set.
- Test-time views: by default those the detector trained on (`fused_views`), at its three training scales when it
  fuses 8 views (`fused_scales`); the fused detections then go through Gaussian soft-NMS (`SOFT_NMS_SIGMA`), so
  duplicates fusion leaves beside a box sink under the served cut. Inference in bf16 where the hardware has it, the
  RPN keeping `SCALED_PROPOSALS` per view and scale when three scales are fused (`inference_fields`): together as
  fast as one scale in float32 with torchvision's 1,000.
- Anchors: spread over the boxes' sizes at that scale (`backend.models.detector.fit_anchor_sizes`).
- Box loss: the box head learns the generalised IoU of its boxes (`BOX_LOSS`), not each coordinate on its own.
- Fine-tuning: a budget that holds two head phases (`training_phases`) spends the second on a schedule that also
  trains the backbone's last blocks (`FINE_TUNE_FROM`, peak lr `FINE_TUNE_LR`), from the head's weights: the head
  alone has learned what it can by then and longer only overfits it.
- Cached variants: with the backbone's taps cached, colour-jittered copies of each image at scales of their own
  (`backend.training.cached_features`), as many as the run has epochs to draw each about `VARIANT_EPOCHS` times
  (`cached_variants`).
A warm-started version keeps the scale and anchors of the version it starts from (its RPN weights belong to them)
while the fit to the grown training set stays within `REFIT` of them and `train_image_size` is unchanged.

Boxes are float32 (N, 4) xyxy pixels of the loaded images; sides in pixels.
"""

from __future__ import annotations

import numpy as np

from backend.core.params import TrainParams
from backend.models.detector import DetectorSpec, fit_anchor_sizes

MIN_BUDGET_S = 60  # the shortest training, whatever the images
SMALL_BOX_PX = 24  # the 5th-percentile box side at the working scale
MIN_SIDE = 256
REFIT = 0.25  # a warm start keeps the previous scale and anchors while a new fit is within 25 % of them
FROZEN_ALL = 16  # every EfficientNet-Lite0 block used: the backbone's taps are cached in training
SOFT_NMS_SIGMA = 0.1  # Gaussian soft-NMS of the fused detections (bench/retrain.py: two 300-s DeepForest detectors,
# held-out AP50 0.467 / 0.466 instead of 0.448 / 0.450, annotation time saved 17.8 / 20.9 % instead of 15.5 / 17.2 %)
SCALED_PROPOSALS = 300  # RPN proposals per view and scale when three are fused (3 × 300 ≈ one scale's 1,000):
# bench/retrain.py, five 300-s DeepForest detectors, the same weights: held-out AP50 0.496 (bf16, three scales, 300)
# against 0.479 (float32, one scale, 1,000), higher at 5 of 5; time saved 19.0 % against 17.7 %; 1.08-1.27 s per
# 400-px tile against 1.05-1.17 s on 2 cores. With 500: AP50 0.504 but 18.4 % saved at 1.36-1.48 s
MAX_VARIANTS = 9  # the image and 8 jittered copies at most (bench/retrain.py, five 300-s DeepForest detectors:
# held-out AP50 0.505 against 0.496 with the image alone, higher at 4 seeds of 5; time saved 19.9 % against 19.0 %;
# 107-114 epochs against about 120)
VARIANT_EPOCHS = 12  # epochs per variant: each cached copy is drawn about this many times in a run
ITEM_STEP_S = 0.087  # seconds of one image's training step from cached taps (2-core CPU, bf16; 0.35 s a batch of 4)
HEAD_PHASE_S = 150  # the shortest first phase before the backbone's last blocks are fine-tuned too (bench/retrain.py
# --budget-s 300, head 150 s then 150 s of fine-tuning against 300 s of head alone, on a CPU running about 100 epochs
# in 150 s, seeds 0-2: AP50 0.539 / 0.515 / 0.516 against 0.529 / 0.498 / 0.503 (seed 2's of 2026-12-07), time saved
# 20.5 / 21.5 / 18.4 % against 19.1 / 21.3 / 20.2 %; head phases of 300 s, bench/retrain.py --budget-s 600, seeds
# 0-3: 0.519 on the mean)
HEAD_EPOCHS = 60  # ... and the epochs it should run at `ITEM_STEP_S` (a large project's head phase is longer)
FINE_TUNE_FROM = 11  # the first block the second phase trains: the stride-32 blocks (11-15 of EfficientNet-Lite0;
# bench/retrain.py --budget-s 600, seeds 0-3: AP50 0.519 against 0.501 for the head alone, time saved 20.8 against
# 19.1 %; from block 8, seed 0: 0.473 against 0.543)
FINE_TUNE_LR = 0.005  # its peak learning rate (a quarter of the head's: it starts from trained weights)
BOX_LOSS = "giou"  # the box head's loss (`backend.models.box_loss`; bench/retrain.py, five 300-s DeepForest detectors:
# held-out AP50 0.481 instead of 0.462 with torchvision's smooth L1, higher at 4 seeds of 5; time saved 18.4 % both)


def box_sides(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    return np.sqrt(np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None))


def working_side(images: list[np.ndarray], boxes: list[np.ndarray], largest: int) -> int:
    """The shorter side (px) to train and predict at: see the module docstring."""
    shorter = float(np.median([min(image.shape[:2]) for image in images]))
    sides = np.concatenate([box_sides(b) * 1.0 for b in boxes]) if boxes else np.zeros(0)
    sides = sides[sides > 0]
    if not len(sides):
        return int(min(largest, max(MIN_SIDE, shorter)))
    scale = SMALL_BOX_PX / float(np.percentile(sides, 5))
    side = shorter * scale
    return int(round(min(largest, max(min(MIN_SIDE, shorter), side))))


def fitted_spec(images: list[np.ndarray], boxes: list[np.ndarray], num_classes: int, params: TrainParams,
                previous: DetectorSpec | None = None) -> DetectorSpec:
    """The spec of a new version: scale and anchors fitted to the training images and boxes, or the `previous`
    version's when they are close to that fit (its weights belong to them: within `REFIT` of the scale and of every
    anchor size, same `train_image_size`); multi-scale training at 0.75 and 1.25 of the scale
    (fused at inference too by `fused_scales`, with `SCALED_PROPOSALS`; bf16 inference); frozen backbone."""
    side = working_side(images, boxes, params.image_size)
    scaled = [box_sides(b) * side / min(image.shape[:2]) for image, b in zip(images, boxes)]
    anchors = fit_anchor_sizes(np.concatenate(scaled) if scaled else [], levels=3)
    if previous is not None and previous.max_size == 2 * params.image_size and _close(previous, side, anchors):
        side, anchors = previous.min_size, previous.anchor_sizes
    train_sizes = (int(side * 0.75), int(side * 1.25))
    return DetectorSpec(num_classes=num_classes, min_size=side, max_size=2 * params.image_size,
                        train_sizes=train_sizes, tta_views=fused_views(params),
                        stride4=False, frozen_blocks=FROZEN_ALL, roi_batch=128, anchor_sizes=anchors,
                        soft_nms_sigma=SOFT_NMS_SIGMA, box_loss=BOX_LOSS,
                        **inference_fields(train_sizes, fused_scales(params)))


def fused_views(params: TrainParams) -> int:
    """The dihedral views a new version fuses at inference: `tta_views`, or with 0 the views it trained on (2 with
    `flip` augmentation, 8 with `dihedral`), which cost one backbone pass per image (`backend.models.map_views`)."""
    return params.tta_views or (8 if params.augment == "dihedral" else 2)


def fused_scales(params: TrainParams) -> int:
    """The scales a new version fuses at inference: `tta_scales`, or with 0 three when it fuses 8 views (the box head,
    run per view, is then most of a prediction, and 300 proposals per scale keep its work; bench/retrain.py: the same
    time per tile) and one otherwise (with 2 views the backbone passes weigh more: three took 1.4 × the time)."""
    return params.tta_scales or (3 if fused_views(params) == 8 else 1)


def inference_fields(train_sizes: tuple[int, ...], scales: int) -> dict:
    """The DetectorSpec inference fields for fusing `scales` (1 or 3) scales: the training sizes as `tta_scales` and
    `SCALED_PROPOSALS` with 3, torchvision's 1,000 proposals with 1; bf16 inference either way."""
    three = scales == 3
    return {"tta_scales": tuple(train_sizes) if three else (), "test_proposals": SCALED_PROPOSALS if three else 1000,
            "bf16_inference": True}


def _close(previous: DetectorSpec, side: int, anchors: tuple) -> bool:
    if not previous.anchor_sizes or len(previous.anchor_sizes) != len(anchors):
        return False
    ratios = [previous.min_size / side] + [a / b for old, new in zip(previous.anchor_sizes, anchors)
                                            for a, b in zip(old, new)]
    return all(1 / (1 + REFIT) <= r <= 1 + REFIT for r in ratios)


def time_budget(n_train_images: int, params: TrainParams) -> float:
    """Seconds one training may take: `seconds_per_image` per training image, at least `MIN_BUDGET_S`, at most
    `time_budget_s` (`seconds_per_image` 0: `time_budget_s`)."""
    if not params.seconds_per_image:
        return float(params.time_budget_s)
    return float(min(params.time_budget_s, max(MIN_BUDGET_S, params.seconds_per_image * n_train_images)))


def training_phases(n_images: int, budget_s: float, epochs: int) -> tuple[float, float]:
    """(seconds of the head phase, seconds of the phase that fine-tunes the backbone's last blocks after it; 0: none)
    for a run of at most `budget_s`. The head phase: `HEAD_PHASE_S`, or longer when `HEAD_EPOCHS` (at most `epochs`)
    of `n_images` at `ITEM_STEP_S` take longer. A budget that holds two of them fine-tunes for as long as the head
    trained and ends there, the rest of the budget unused (longer fine-tuning overfits: bench/retrain.py, 300 s of
    head then 500 s of fine-tuning, AP50 0.511 against 0.543 with 300 s; 150 + 150 s about as good as 300 + 300 s);
    a shorter one trains the head alone."""
    head_s = max(HEAD_PHASE_S, ITEM_STEP_S * max(1, n_images) * min(HEAD_EPOCHS, epochs))
    return (head_s, head_s) if budget_s >= 2 * head_s else (float(budget_s), 0.0)


def cached_variants(n_images: int, budget_s: float, epochs: int) -> int:
    """How many variants of each training image a run draws from (`MAX_VARIANTS` at most, 1: the image alone): the
    epochs it can run (`epochs`, or fewer when `budget_s` at `ITEM_STEP_S` per image ends it first) over
    `VARIANT_EPOCHS`. A large project, whose few epochs would each compute new copies and use them once, trains on
    its images alone."""
    expected = min(float(epochs), budget_s / (ITEM_STEP_S * max(1, n_images)))
    return int(max(1, min(MAX_VARIANTS, expected // VARIANT_EPOCHS)))
