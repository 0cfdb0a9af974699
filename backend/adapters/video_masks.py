"""What the video trackers share: checking streamed frames, turning mask batches into boxes, pruning the memory of
frames the model no longer reads."""

from __future__ import annotations

import numpy as np
import torch


def check_frame(frame: np.ndarray, index: int, size: tuple[int, int] | None) -> tuple[int, int]:
    """The frame's (H, W); ValueError unless it is uint8 (H, W, 3) of `size` (when given)."""
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        shape = getattr(frame, "shape", None)
        raise ValueError(f"frame {index}: expected a uint8 (H, W, 3) array, got {type(frame).__name__} {shape}")
    if size is not None and frame.shape[:2] != size:
        raise ValueError(f"frame {index} is {frame.shape[1]}x{frame.shape[0]}, the first frame {size[1]}x{size[0]}")
    return frame.shape[:2]


def mask_boxes(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """bool (N, H, W) → float32 (N, 4) tight xyxy pixel boxes (exclusive right/bottom edges), bool (N,) non-empty."""
    rows, cols = masks.any(dim=2), masks.any(dim=1)  # (N, H), (N, W)
    present = rows.any(dim=1)
    height, width = masks.shape[1:]
    y0 = rows.int().argmax(dim=1)
    x0 = cols.int().argmax(dim=1)
    y1 = height - rows.flip(1).int().argmax(dim=1)
    x1 = width - cols.flip(1).int().argmax(dim=1)
    return torch.stack([x0, y0, x1, y1], dim=1).float(), present


def prune_recent_outputs(outputs: dict[int, dict], oldest_pointer: int, oldest_memory: int) -> None:
    """One object's non-conditioning frame outputs (frame index → entry) of a SAM 2-style inference session, in place:
    frames before `oldest_pointer` are dropped, mask logits go everywhere, and spatial memory (`maskmem_*`) goes
    before `oldest_memory` (the object pointer and score stay)."""
    for frame_idx in [f for f in outputs if f < oldest_pointer]:
        del outputs[frame_idx]
    for frame_idx, entry in outputs.items():
        entry.pop("high_res_masks", None)
        entry.pop("pred_masks", None)
        if frame_idx < oldest_memory:
            entry.pop("maskmem_features", None)
            entry.pop("maskmem_pos_enc", None)
