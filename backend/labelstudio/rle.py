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
_SIZE_LIMITS = np.array([8, 16, 256])
_SIZE_BITS = np.array([3, 4, 8, 16], np.int64)


def encode_mask(mask: np.ndarray) -> list[int]:
    """bool/uint8 (H, W) mask → Label Studio brush RLE (list of byte values).

    Pixels that are non-zero become 255 in all four RGBA channels.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    flat = np.ascontiguousarray(mask).ravel()
    on = (flat if flat.dtype == bool else flat != 0).view(np.uint8)  # 0/1 bytes, no copy for bool
    return _encode(on, scale=255, repeat=4)


def _encode(values: np.ndarray, scale: int, repeat: int) -> list[int]:
    """Runs of uint8 `values` (each value x `scale`, each repeated `repeat` times) → RLE bytes."""
    total = values.size * repeat
    header = (total << 21) | ((_WORD_BITS - 1) << 16) | (2 << 12) | (3 << 8) | (7 << 4) | 15
    if values.size == 0:
        codes, widths = np.zeros(0, np.uint64), np.zeros(0, np.int64)
    else:
        change = np.flatnonzero(values[1:] != values[:-1]) + 1
        starts = np.concatenate(([0], change))
        lengths = np.diff(np.concatenate((starts, [values.size]))).astype(np.int64) * repeat
        codes, widths = _run_tokens(lengths, values[starts].astype(np.uint64) * np.uint64(scale))
    # header: 32-bit value count, then 5 + 4 * 4 bits of parameters
    widths = np.concatenate(([32, 21], widths))
    codes = np.concatenate((np.array([header >> 21, header & 0x1FFFFF], np.uint64), codes))
    return _pack_bits(codes, widths)


def _run_tokens(lengths: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Runs → (uint64 codes, int64 bit widths), one token per run.

    Token = flag (1 bit: run of 2+), size index (2 bits into [3, 4, 8, 16]), length - 1, 8-bit value.
    Runs longer than 2**16 are split as the sdk does: floor((len - 1) / 2**16) full chunks, then the rest.
    """
    if lengths.size and lengths.max() > _MAX_RUN:
        full = np.where(lengths > 256, (lengths - 1) // _MAX_RUN, 0)
        n_tokens = full + 1
        last = np.cumsum(n_tokens) - 1
        values = np.repeat(values, n_tokens)
        split = np.full(values.size, _MAX_RUN, np.int64)
        split[last] = lengths - full * _MAX_RUN
        lengths = split
    index = np.searchsorted(_SIZE_LIMITS, lengths, side="left")  # <=8, <=16, <=256, longer
    size_bits = _SIZE_BITS[index]
    flag = (lengths > 1).astype(np.uint64)
    shift = size_bits.astype(np.uint64)
    codes = (flag << (shift + np.uint64(10))) | (index.astype(np.uint64) << (shift + np.uint64(8)))
    codes |= ((lengths - 1).astype(np.uint64) << np.uint64(8)) | values
    return codes, size_bits + 11


def _pack_bits(codes: np.ndarray, widths: np.ndarray) -> list[int]:
    """Concatenate the low `widths[i]` (<= 32) bits of `codes[i]` MSB first, pad like the sdk, → bytes.

    Tokens never share bits, so each one is shifted into a 64-bit window over the 32-bit word it
    starts in and summed per word with `bincount` (exact: every per-word sum is below 2**32).
    """
    widths = widths.astype(np.int64)
    n_bits = int(widths.sum())
    pad = 8 - n_bits % 8  # the sdk always pads, a whole byte when already aligned
    n_bytes = (n_bits + pad) // 8
    offsets = np.cumsum(widths) - widths
    word, shift = offsets // 32, offsets % 32
    window = codes << (64 - shift - widths).astype(np.uint64)
    n_words = n_bytes // 4 + 2
    high = np.bincount(word, weights=(window >> np.uint64(32)).astype(np.float64), minlength=n_words)
    low = np.bincount(word + 1, weights=(window & np.uint64(0xFFFFFFFF)).astype(np.float64), minlength=n_words)
    words = (high + low).astype(">u4")
    return np.frombuffer(words.tobytes()[:n_bytes], dtype=np.uint8).tolist()


def decode_mask(rle: list[int], width: int, height: int) -> np.ndarray:
    """Label Studio brush RLE → bool (H, W) mask (alpha channel > 0), using the sdk's decoder."""
    from label_studio_sdk.converter.brush import decode_rle

    flat = decode_rle(bytes(rle))
    if flat.size != width * height * 4:
        raise ValueError(f"RLE holds {flat.size} values, expected {width * height * 4} for {width}x{height}")
    return flat.reshape(height, width, 4)[:, :, 3] > 0
