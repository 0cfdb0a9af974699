"""Label Studio brush RLE, vectorised with NumPy.

Label Studio stores a brush region as the RLE (the `@thi.ng/rle-pack` bit format) of the
mask's RGBA bytes: every pixel repeated 4 times, 255 inside, 0 outside. The encoder here
produces exactly the bytes of `label_studio_sdk.converter.brush.mask2rle` (including its quirks:
8-bit words, run-size table [3, 4, 8, 16], a trailing pad byte when the bit count is already a
multiple of 8) without a Python loop over runs.
"""

from __future__ import annotations

import numpy as np

_WORD_BITS = 8
_MAX_RUN = 1 << 16


def encode_mask(mask: np.ndarray) -> list[int]:
    """bool/uint8 (H, W) mask → Label Studio brush RLE (list of byte values).

    Pixels that are non-zero become 255 in all four RGBA channels.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    values = np.where(mask.ravel() != 0, 255, 0).astype(np.uint8)
    return encode_values(values, repeat=4)


def encode_values(values: np.ndarray, repeat: int = 1) -> list[int]:
    """RLE of `np.repeat(values, repeat)` for uint8 `values`, as `encode_rle` in the sdk."""
    values = np.asarray(values, dtype=np.uint8).ravel()
    total = values.size * repeat
    header = (total << 21) | ((_WORD_BITS - 1) << 16) | (2 << 12) | (3 << 8) | (7 << 4) | 15
    if values.size == 0:
        codes, widths = np.zeros(0, np.uint64), np.zeros(0, np.int64)
    else:
        change = np.flatnonzero(values[1:] != values[:-1]) + 1
        starts = np.concatenate(([0], change))
        lengths = np.diff(np.concatenate((starts, [values.size]))).astype(np.int64) * repeat
        codes, widths = _run_tokens(lengths, values[starts].astype(np.uint64))
    widths = np.concatenate(([53], widths))  # header: 32 + 5 + 4 * 4 bits
    codes = np.concatenate((np.array([header], np.uint64), codes))
    return _pack_bits(codes, widths)


def _run_tokens(lengths: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Runs → (codes, bit widths). Runs longer than 2**16 are split as the sdk does."""
    # The sdk emits floor((len - 1) / 2**16) full chunks of 2**16, then the remainder.
    full = np.where(lengths > 256, (lengths - 1) // _MAX_RUN, 0)
    rest = lengths - full * _MAX_RUN
    n_tokens = full + 1
    token_len = np.repeat(rest, n_tokens)
    token_val = np.repeat(values, n_tokens)
    last = np.cumsum(n_tokens) - 1
    is_full = np.ones(token_len.size, bool)
    is_full[last] = False
    token_len = np.where(is_full, _MAX_RUN, token_len).astype(np.uint64)
    big = np.repeat(lengths > 256, n_tokens)

    one = token_len == 1
    small = (token_len <= 8) & ~one
    mid = (token_len > 8) & (token_len <= 16)
    large = (token_len > 16) & ~big
    # (flag, size index, size bits) for each class; single values use flag 0 with index 0 and 3 bits.
    flag = np.where(one, 0, 1).astype(np.uint64)
    index = np.select([one | small, mid, large], [0, 1, 2], 3).astype(np.uint64)
    size_bits = np.select([one | small, mid, large], [3, 4, 8], 16).astype(np.uint64)
    length_field = np.where(one, 0, token_len - 1).astype(np.uint64)
    codes = (flag << (np.uint64(2) + size_bits + np.uint64(8))) | (index << (size_bits + np.uint64(8)))
    codes |= (length_field << np.uint64(8)) | token_val
    widths = (3 + size_bits + 8).astype(np.int64)
    return codes, widths


def _pack_bits(codes: np.ndarray, widths: np.ndarray) -> list[int]:
    """Concatenate the low `widths[i]` bits of `codes[i]` (MSB first), pad like the sdk, → bytes."""
    n_bits = int(widths.sum())
    offsets = np.repeat(np.cumsum(widths) - widths, widths)
    bit_in_token = np.arange(n_bits, dtype=np.int64) - offsets
    shifts = (np.repeat(widths, widths) - 1 - bit_in_token).astype(np.uint64)
    bits = ((np.repeat(codes, widths) >> shifts) & np.uint64(1)).astype(np.uint8)
    pad = 8 - n_bits % 8  # the sdk always pads, a whole byte when already aligned
    bits = np.concatenate((bits, np.zeros(pad, np.uint8)))
    return np.packbits(bits).tolist()


def decode_mask(rle: list[int], width: int, height: int) -> np.ndarray:
    """Label Studio brush RLE → bool (H, W) mask (alpha channel > 0), using the sdk's decoder."""
    from label_studio_sdk.converter.brush import decode_rle

    flat = decode_rle(bytes(rle))
    if flat.size != width * height * 4:
        raise ValueError(f"RLE holds {flat.size} values, expected {width * height * 4} for {width}x{height}")
    return flat.reshape(height, width, 4)[:, :, 3] > 0
