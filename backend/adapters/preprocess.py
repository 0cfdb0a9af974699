"""On-device image preprocessing for Grounding DINO and SAM, replacing the processors' CPU/PIL path.

Same geometry as the transformers image processors (their resize rules, rescale, mean/std, bottom-right
zero padding), computed with `torch.nn.functional.interpolate` on the model's device. Parameters are read
from the loaded image processor, so any checkpoint's settings apply.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def size_field(size, key):
    """`size[key]` for the dict (transformers 4) or SizeDict (transformers 5) image-processor sizes."""
    return size.get(key) if isinstance(size, dict) else getattr(size, key, None)


def dino_output_hw(height: int, width: int, shortest: int, longest: int | None) -> tuple[int, int]:
    """Grounding DINO / DETR resize rule: shorter side → `shortest` unless the longer would pass `longest`."""
    raw = None
    size = shortest
    if longest is not None:
        lo, hi = float(min(height, width)), float(max(height, width))
        if hi / lo * size > longest:
            raw = longest * lo / hi
            size = int(round(raw))
    if (height <= width and height == size) or (width <= height and width == size):
        return height, width
    if width < height:
        return int((raw if raw is not None else size) * height / width), size
    return size, int((raw if raw is not None else size) * width / height)


def sam_output_hw(height: int, width: int, longest: int) -> tuple[int, int]:
    scale = longest / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def _resized(image: np.ndarray, size_hw: tuple[int, int], device: str, mean: torch.Tensor, std: torch.Tensor):
    tensor = torch.from_numpy(image).to(device, non_blocking=True).permute(2, 0, 1)[None].float()
    tensor = F.interpolate(tensor, size=size_hw, mode="bilinear", antialias=True, align_corners=False)
    return (tensor[0] / 255.0 - mean) / std


def _stats(processor, device):
    mean = torch.tensor(processor.image_mean, device=device).view(3, 1, 1)
    std = torch.tensor(processor.image_std, device=device).view(3, 1, 1)
    return mean, std


def dino_pixels(images: list[np.ndarray], processor, device: str, dtype: torch.dtype):
    """uint8 (H, W, 3) images → pixel_values (B, 3, Hmax, Wmax) in `dtype` and bool pixel_mask (B, Hmax, Wmax)."""
    mean, std = _stats(processor, device)
    shortest, longest = size_field(processor.size, "shortest_edge"), size_field(processor.size, "longest_edge")
    sizes = [dino_output_hw(im.shape[0], im.shape[1], shortest, longest) for im in images]
    hmax, wmax = max(h for h, _ in sizes), max(w for _, w in sizes)
    pixels = torch.zeros(len(images), 3, hmax, wmax, device=device, dtype=dtype)
    mask = torch.zeros(len(images), hmax, wmax, device=device, dtype=torch.long)
    for i, (image, (h, w)) in enumerate(zip(images, sizes)):
        pixels[i, :, :h, :w] = _resized(image, (h, w), device, mean, std).to(dtype)
        mask[i, :h, :w] = 1
    return pixels, mask


def sam_pixels(images: list[np.ndarray], processor, device: str, dtype: torch.dtype):
    """uint8 (H, W, 3) images → pixel_values (B, 3, P, P) in `dtype`, original (H, W) and resized (h, w) of each."""
    mean, std = _stats(processor, device)
    longest = size_field(processor.size, "longest_edge")
    pad_h, pad_w = size_field(processor.pad_size, "height"), size_field(processor.pad_size, "width")
    pixels = torch.zeros(len(images), 3, pad_h, pad_w, device=device, dtype=dtype)
    originals_hw, resized_hw = [], []
    for i, image in enumerate(images):
        h, w = sam_output_hw(image.shape[0], image.shape[1], longest)
        pixels[i, :, :h, :w] = _resized(image, (h, w), device, mean, std).to(dtype)
        originals_hw.append((image.shape[0], image.shape[1]))
        resized_hw.append((h, w))
    return pixels, originals_hw, resized_hw
