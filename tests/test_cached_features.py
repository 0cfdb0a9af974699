"""The frozen-backbone training path: cached taps, views of maps and boxes agree with image views, losses finite."""

import numpy as np
import pytest
import torch

from backend.models.detector import DetectorSpec, build_detector
from backend.models.tta import view, view_boxes
from backend.models.map_views import backbone_taps, view_map
from backend.training.cached_features import TapCache, cached_losses, jittered_copy
from backend.training.detector import TrainConfig, train_detector


@pytest.mark.parametrize("k", range(8))
def test_view_map_is_the_image_view(k):
    image = np.random.default_rng(k).integers(0, 255, (6, 9, 3), dtype=np.uint8)
    mapped = view_map(torch.from_numpy(image).permute(2, 0, 1), k).permute(1, 2, 0).numpy()
    assert np.array_equal(mapped, view(image, k))


@pytest.mark.parametrize("k", range(8))
def test_a_box_follows_its_pixels(k):
    image = np.zeros((6, 9, 3), np.uint8)
    image[1:3, 2:7] = 255
    box = view_boxes(np.array([[2, 1, 7, 3]], np.float32), k, 9, 6)[0].astype(int)
    seen = view_map(torch.from_numpy(image).permute(2, 0, 1), k)[0].numpy()
    ys, xs = np.nonzero(seen)
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == tuple(box)


def _blob(seed, size=64):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, (size, size + 16, 3), dtype=np.uint8)
    x, y = rng.integers(4, 30, 2)
    image[y:y + 20, x:x + 20] = 220
    return image, np.array([[x, y, x + 20, y + 20]], np.float32), np.ones(1, np.int64)


def test_frozen_backbone_trains_from_cached_taps():
    spec = DetectorSpec(num_classes=1, min_size=64, max_size=128, train_sizes=(48,), frozen_blocks=11, stride4=False)
    model = build_detector(spec, pretrained=False)
    assert model.backbone.cacheable
    items = [_blob(i) for i in range(4)]
    taps, (sx, sy), padded = backbone_taps(model, items[0][0], 64, "cpu")
    assert padded == (64, 96) and sx == pytest.approx(1.0) and all(t.dtype == torch.float16 for t in taps.values())
    assert set(taps) == {"1", "2", "_last"}  # block 15 (level "3") trains: computed from "_last" each step
    cache = TapCache(2**30)
    model.train()
    losses = cached_losses(model, items, np.array([0, 1, 2]), np.random.default_rng(0), cache, True, "cpu")
    assert set(losses) >= {"loss_objectness", "loss_classifier"} and all(torch.isfinite(v) for v in losses.values())
    assert cache.misses == 3 and len(cache.items) == 3
    stats = train_detector(model, items, "cpu", TrainConfig(epochs=3, batch_size=2, time_budget_s=3600))
    assert stats["cached_taps"] <= 8 and stats["epochs"] == 3  # 4 items x at most 2 scales


def test_the_cache_stops_at_its_bound():
    cache = TapCache(limit_bytes=100)
    value = ({"0": torch.zeros(10, dtype=torch.float16)}, (1, 1), (32, 32))  # 20 bytes
    for i in range(8):
        cache.get((i, 1), lambda: value)
    assert len(cache.items) == 5 and cache.bytes == 100 and cache.misses == 8


def test_a_jittered_copy_is_fixed_per_item_and_variant():
    image, _, _ = _blob(0)
    assert jittered_copy(image, 3, 0, 0.2) is image and jittered_copy(image, 3, 2, 0.0) is image
    first, again = jittered_copy(image, 3, 2, 0.2), jittered_copy(image, 3, 2, 0.2)
    other = jittered_copy(image, 3, 1, 0.2)
    assert first.dtype == np.uint8 and first.shape == image.shape
    assert np.array_equal(first, again) and not np.array_equal(first, image) and not np.array_equal(first, other)


class _Recording(TapCache):
    """Records the keys asked for once the cache is full."""

    def __init__(self, limit_bytes):
        super().__init__(limit_bytes)
        self.asked_when_full = []

    def get(self, key, compute):
        if self.full:
            self.asked_when_full.append(key)
        return super().get(key, compute)


def _variant_run(limit_bytes, steps=40):
    spec = DetectorSpec(num_classes=1, min_size=64, max_size=128, train_sizes=(48, 80), frozen_blocks=16,
                        stride4=False)
    model = build_detector(spec, pretrained=False).train()
    items, cache, rng = [_blob(i) for i in range(2)], _Recording(limit_bytes), np.random.default_rng(0)
    with torch.no_grad():
        for _ in range(steps):
            cached_losses(model, items, np.array([0, 1]), rng, cache, True, "cpu", variants=4, colour_jitter=0.2)
    return cache


def test_variants_are_cached_each_at_a_scale_of_its_own_until_the_cache_is_full():
    cache = _variant_run(2**30)
    keys = set(cache.items)
    assert {v for _, _, v in keys} == {0, 1, 2, 3} and not cache.full
    assert all(48 <= size <= 80 for _, size, _ in keys)
    assert {size for _, size, v in keys if v == 0} <= {48, 64, 80}  # the image itself: at the training scales
    assert len({(i, v) for i, _, v in keys if v}) == len([k for k in keys if k[2]])  # one scale per copy
    one = next(iter(cache.items.values()))
    entry = sum(t.numel() * t.element_size() for t in one[0].values())
    small = _variant_run(int(entry * 2.5))  # room for a few entries: then copies it holds, or the images
    assert small.full and len(small.items) < len(cache.items) and small.asked_when_full
    assert all(v == 0 or key in small.items for key in small.asked_when_full for v in [key[2]])


@pytest.mark.parametrize("images,budget_s,epochs,variants", [
    (27, 300, 200, 9),  # a 300-s head phase of 27 tiles: about 128 epochs → the most
    (27, 300, 100, 8),  # a project's train_epochs 100: each copy drawn about 12 times
    (10, 60, 100, 5),  # a first version: 60 s, 69 epochs
    (100, 600, 100, 5),
    (1000, 1800, 100, 1),  # 20 epochs: new copies would each be used once or twice: the images alone
    (0, 60, 100, 8),
])
def test_cached_variants_follow_the_epochs_a_run_has(images, budget_s, epochs, variants):
    from backend.training.recipe import cached_variants
    assert cached_variants(images, budget_s, epochs) == variants


@pytest.mark.parametrize("images,budget_s,epochs,phases", [
    (27, 1800, 200, (150, 150)),  # bench/retrain.py at 1800 s: 150 s of head, as long fine-tuning, then it ends
    (27, 300, 200, (150, 150)),  # exactly two head phases (60 epochs of 27 images at 0.087 s: 141 s)
    (27, 299, 200, (299, 0)),  # less: the head alone, the whole budget
    (27, 120, 200, (120, 0)),
    (150, 1500, 100, (1500, 0)),  # 60 epochs of 150 images take 783 s: no room for a second phase
    (150, 1800, 100, (783, 783)),  # ... which 1,800 s holds
    (150, 900, 10, (150, 150)),  # epochs capped lower: the shortest head phase
    (0, 900, 100, (150, 150)),
])
def test_fine_tuning_follows_a_head_phase_when_the_budget_holds_two(images, budget_s, epochs, phases):
    from backend.training.recipe import training_phases
    assert training_phases(images, budget_s, epochs) == pytest.approx(phases)


@pytest.mark.parametrize("frozen, fine_tune_s, trained_from", [
    (16, 3600.0, 11),  # the whole backbone cached for the head phase, blocks 11-15 fine-tuned after it
    (16, 0.0, None),  # one phase: the backbone keeps its weights
    (8, 3600.0, None),  # fine_tune_from 11 is frozen already: nothing more to train, one phase
])
def test_a_second_phase_fine_tunes_the_last_blocks_and_freezes_them_again(frozen, fine_tune_s, trained_from):
    spec = DetectorSpec(num_classes=1, min_size=64, max_size=128, train_sizes=(48,), frozen_blocks=frozen,
                        stride4=False)
    model = build_detector(spec, pretrained=False)
    blocks = model.backbone.blocks
    before = [next(b.parameters()).detach().clone() for b in blocks]
    config = TrainConfig(epochs=2, batch_size=2, time_budget_s=7200, fine_tune_s=fine_tune_s, fine_tune_from=11)
    reported = []
    stats = train_detector(model, [_blob(i) for i in range(4)], "cpu", config,
                           progress=lambda epoch, epochs, loss: reported.append((epoch, epochs)))
    phases = 1 if trained_from is None else 2
    assert reported == [(e, 2 * phases) for e in range(1, 2 * phases + 1)]  # one count over both phases
    moved = [i for i, b in enumerate(blocks) if not torch.equal(next(b.parameters()), before[i])]
    if trained_from is None:
        assert "fine_tune" not in stats and stats["epochs"] == 2
        assert moved == list(range(frozen, len(blocks)))
    else:
        assert moved == list(range(trained_from, len(blocks)))
        assert stats["fine_tune"]["from_block"] == trained_from and stats["fine_tune"]["epochs"] == 2
        assert stats["epochs"] == 4 and stats["steps"] == 8
    assert model.backbone.frozen_blocks == frozen and model.backbone.cacheable  # as its spec says again
    assert not any(p.requires_grad for b in blocks[:frozen] for p in b.parameters())
