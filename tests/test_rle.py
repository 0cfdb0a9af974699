"""Our vectorised brush RLE must equal label-studio-sdk's `mask2rle` byte for byte."""

import numpy as np
import pytest
from label_studio_sdk.converter.brush import decode_rle, mask2rle

from backend.labelstudio.rle import decode_mask, encode_mask


def _rect(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


RNG = np.random.default_rng(7)
CASES = [
    ("empty 1x1", np.zeros((1, 1), bool)),
    ("full 1x1", np.ones((1, 1), bool)),
    ("all zeros", np.zeros((64, 48), bool)),
    ("all ones (long runs split at 2**16)", np.ones((300, 300), bool)),
    ("exactly 2**16 values", np.ones((128, 128), bool)),
    ("rectangle", _rect(120, 90, 10, 70, 20, 60)),
    ("touching every border", _rect(50, 50, 0, 50, 0, 50) & ~_rect(50, 50, 10, 40, 10, 40)),
    ("single pixels (runs of 4)", RNG.random((31, 29)) > 0.5),
    ("sparse noise", RNG.random((80, 80)) > 0.97),
    ("stripe 16 px long", _rect(8, 40, 3, 4, 0, 4)),
    ("1024 square blob", _rect(1024, 1024, 100, 700, 200, 900)),
] + [(f"random {i}", RNG.random(tuple(RNG.integers(1, 60, 2))) > RNG.random()) for i in range(20)]


@pytest.mark.parametrize("name,mask", CASES, ids=[c[0] for c in CASES])
def test_encoder_matches_sdk_and_decodes(name, mask):
    ours = encode_mask(mask)
    assert ours == list(mask2rle(mask.astype(np.uint8) * 255))
    flat = decode_rle(bytes(ours))
    assert flat.shape == (mask.size * 4,)
    assert np.array_equal(flat.reshape(*mask.shape, 4)[..., 3] > 0, mask)
    assert np.array_equal(decode_mask(ours, mask.shape[1], mask.shape[0]), mask)


def test_encoder_rejects_non_2d():
    with pytest.raises(ValueError, match="2-D"):
        encode_mask(np.zeros((2, 2, 2)))


def test_decode_checks_size():
    with pytest.raises(ValueError, match="expected"):
        decode_mask(encode_mask(np.ones((4, 4), bool)), 5, 4)
