"""Image bytes → RGB uint8 at a bounded working size, as the annotator sees it (EXIF orientation applied).

Memory: the pixel cap is checked on the header before anything is decoded; JPEGs are decoded at a reduced
scale (DCT scaling) when the working size allows; other formats are decoded once at full size, scaled down
at once and released, and a `DecodeBudget` bounds the full-size pixels being decoded at the same time, so the
decoding peak stays near 4 bytes x `MAX_IMAGE_PIXELS` however many downloads run in parallel.
High bit depths are scaled, not clipped: 16-bit → value / 257, float in [0, 1] → x 255, other float and 32-bit
integer images → their min..max range stretched to 0..255.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import threading
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from backend.core.errors import TaskError
from backend.core.sizes import Size, size_of

RELEASE_ABOVE_PIXELS = 16_000_000  # after decoding images this large, hand freed heap memory back to the OS


@dataclass(frozen=True)
class LoadedImage:
    """A task image ready for the pipelines.

    pixels: uint8 (h, w, 3) RGB at working size (the original scaled so its longer side is at most the
    working side; the original itself when smaller). original_size: (width, height) of the original in pixels,
    after EXIF orientation: the frame Label Studio's coordinates and `original_width/height` refer to.
    """

    pixels: np.ndarray
    original_size: Size

    @property
    def working_size(self) -> Size:
        """(width, height) of `pixels`."""
        return size_of(self.pixels)


class DecodeBudget:
    """At most `max_pixels` full-size pixels decoded at once (an image larger than that decodes alone)."""

    def __init__(self, max_pixels: int):
        self.max_pixels = max_pixels
        self._in_use = 0
        self._free = threading.Condition()

    @contextmanager
    def reserve(self, pixels: int):
        pixels = min(pixels, self.max_pixels)
        with self._free:
            self._free.wait_for(lambda: self._in_use + pixels <= self.max_pixels)
            self._in_use += pixels
        try:
            yield
        finally:
            with self._free:
                self._in_use -= pixels
                self._free.notify_all()


def decode_image(data: bytes, max_pixels: int, max_side: int = 0, name: str = "image",
                 budget: DecodeBudget | None = None) -> LoadedImage:
    """Bytes → `LoadedImage` (longer side scaled to at most `max_side`; 0 = keep the size).

    Raises `TaskError` for unreadable data and images over `max_pixels` (checked before decoding)."""
    try:
        pixels, original, w, h = _open_and_decode(data, max_pixels, max_side, name, budget)
    except TaskError:
        raise
    except Image.DecompressionBombError as exc:
        raise TaskError(f"image {name!r} is over MAX_IMAGE_PIXELS={max_pixels} or PIL's bomb guard: {exc}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, TypeError) as exc:
        raise TaskError(f"{name!r} is not a readable image: {exc}") from None
    if w * h >= RELEASE_ABOVE_PIXELS:  # the full-size image is gone by now: hand its pages back
        release_free_memory()
    return LoadedImage(pixels, Size(*original))


def _open_and_decode(data: bytes, max_pixels: int, max_side: int, name: str, budget: DecodeBudget | None):
    with Image.open(io.BytesIO(data)) as img:
        w, h = img.size
        if w * h > max_pixels:
            raise TaskError(f"image {name!r} is {w}x{h} = {w * h} pixels, over MAX_IMAGE_PIXELS={max_pixels}")
        with (budget.reserve(w * h) if budget else _nothing()):
            pixels, original = _decode(img, max_side)
    return pixels, original, w, h


def _decode(img: Image.Image, max_side: int) -> tuple[np.ndarray, tuple[int, int]]:
    orientation = img.getexif().get(0x0112, 1)
    w, h = img.size
    original = (h, w) if orientation in (5, 6, 7, 8) else (w, h)
    target = _target_size(w, h, max_side)
    if img.format == "JPEG" and target != (w, h):
        img.draft("RGB", target)  # DCT-scaled decoding: 1/2, 1/4 or 1/8 of the size, never below `target`
    img.load()
    if orientation != 1:
        img = ImageOps.exif_transpose(img)  # a new image; with orientation 1 it would only be a full-size copy
    img = _to_rgb8(img)
    final = _transposed(target, orientation)
    if img.size != final:
        img = img.resize(final, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(img, dtype=np.uint8).copy(), original


def _target_size(w: int, h: int, max_side: int) -> tuple[int, int]:
    if max_side <= 0 or max(w, h) <= max_side:
        return w, h
    scale = max_side / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _transposed(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size


def _to_rgb8(img: Image.Image) -> Image.Image:
    """Any PIL mode → 8-bit RGB; 16-bit and float images scaled to 0..255 instead of clipped."""
    if img.mode in ("RGB",):
        return img
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        values = np.asarray(img)
        return Image.fromarray(_scale_to_uint8(values, img.mode)).convert("RGB")
    return img.convert("RGB")


def _scale_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """Grey values of a high-bit-depth mode → uint8 (h, w): 16-bit as value / 257 (what browsers show);
    float in [0, 1] x 255; other floats and 32-bit integers beyond 0..255 stretched from their min to their max."""
    if mode.startswith("I;16"):
        return ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    values = np.nan_to_num(values.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(values.min(initial=0.0)), float(values.max(initial=0.0))
    if mode == "F" and low >= 0.0 and high <= 1.0:
        return np.round(values * 255).astype(np.uint8)
    if mode == "I" and low >= 0.0 and high <= 255.0:
        return values.astype(np.uint8)
    return _stretch(values, low, high)


def _stretch(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:
        return np.zeros(values.shape, np.uint8)
    return np.round((values - low) / (high - low) * 255).astype(np.uint8)


@contextmanager
def _nothing():
    yield


_libc = None


def release_free_memory() -> None:
    """Ask glibc to return freed heap pages to the OS (large decodes otherwise stay in the process's RSS)."""
    global _libc
    if _libc is None:
        path = ctypes.util.find_library("c")
        _libc = ctypes.CDLL(path) if path else False
    if _libc and hasattr(_libc, "malloc_trim"):
        _libc.malloc_trim(0)
