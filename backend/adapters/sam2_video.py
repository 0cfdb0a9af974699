"""SAM 2 video (transformers `Sam2VideoModel` + `Sam2VideoProcessor`): seed boxes → masks followed forward.

Loaded from a hub id or a local `save_pretrained` directory; an EdgeTAM video checkpoint (config model_type
"edgetam_video") loads as `EdgeTamVideoModel` through the same processor (its backbone needs timm). bfloat16 on
CUDA, float32 on CPU. Frames are streamed one at a time through the model's streaming mode
(`init_video_session()` without a video, then `model(inference_session, frame_idx, frame)` per frame), so a long
clip never sits in memory decoded, and what the session keeps per frame is pruned to what SAM 2 still reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import nullcontext
from typing import ContextManager
from dataclasses import dataclass

import numpy as np
import torch

from backend.adapters.video_masks import check_frame, mask_boxes, prune_recent_outputs

EDGETAM_TYPES = ("edgetam_video", "edgetam")


@dataclass(frozen=True)
class BoxSeed:
    """One object to follow: obj_id (int >= 1), frame (0-based index into the frames given), xyxy float32 (4,) pixels."""

    obj_id: int
    frame: int
    xyxy: np.ndarray


@dataclass(frozen=True)
class PropagatedTrack:
    """obj_id; frames int64 (K,) 0-based indices (into the frames given) where the object's mask is non-empty, from its
    seed frame on; xyxy float32 (K, 4) tight pixel box of the mask at each; scores float32 (K,) in [0, 1] (the model's
    object score, sigmoid of object_score_logits, or the mask's mean probability if that is not available)."""

    obj_id: int
    frames: np.ndarray
    xyxy: np.ndarray
    scores: np.ndarray


class VideoObjectTracker:
    """`propagate(frames, seeds)` → one `PropagatedTrack` per seed, tracked forward from its seed frame.

    Memory stays bounded however long the clip: after every frame the inference session is pruned to what SAM 2
    reads later (results are identical to an unpruned session). Per object it keeps its one conditioning (seed)
    frame's outputs plus the non-conditioning outputs of the last `max_object_pointers_in_encoder - 1` (15) frames;
    only the last `num_maskmem - 1` (6) of those keep their spatial memory (maskmem features bf16 + positional
    encoding, (64·64, 1, 64) each at 1024 px, ~1.5 MB), the older ones only their object pointer (256 floats) and
    score. No frame's pixels are kept after it is processed, the vision-feature cache holds one frame, and per-frame
    mask logits (low- and high-resolution) are dropped as soon as the frame's memory is encoded.
    """

    def __init__(self, source: str, device: str, dtype: torch.dtype | None = None):
        from transformers import AutoConfig, Sam2VideoModel, Sam2VideoProcessor

        from backend.adapters.hub import load_pretrained

        self.name = source
        self.device = device
        self.dtype = dtype or (torch.bfloat16 if device.startswith("cuda") else torch.float32)
        model_type = getattr(load_pretrained(AutoConfig, source), "model_type", "")
        if model_type in EDGETAM_TYPES:
            from transformers import EdgeTamVideoModel as model_cls
        else:
            model_cls = Sam2VideoModel
        self.processor = load_pretrained(Sam2VideoProcessor, source)
        self.model = load_pretrained(model_cls, source, dtype=self.dtype).to(device).eval()
        config = self.model.config
        self.memory_frames = max(int(config.num_maskmem) - 1, 0)  # past frames whose spatial memory is read
        self.pointer_frames = max(int(config.max_object_pointers_in_encoder) - 1, self.memory_frames)

    @torch.inference_mode()
    def propagate(self, frames: Iterable[np.ndarray], seeds: list[BoxSeed], max_frames: int | None = None,
                  stop: Callable[[], bool] | None = None,
                  hold: Callable[[], ContextManager] = nullcontext) -> list[PropagatedTrack]:
        """Follow each seed's object forward from its seed frame; one track per seed, in the seeds' order.

        frames: uint8 (H, W, 3) RGB frames of one video, all one size, read lazily (a generator is fine); frames
        before the earliest seed are read but not processed. Each object joins at its seed frame (its box, xyxy
        pixels of the frame, may stick out of the frame: it is clipped). `max_frames` caps the frames processed from
        the earliest seed frame on; `stop()` returning True ends early; either way what was tracked is returned; `hold()`
        is entered around each frame's model call (the device gate). A
        seed whose frame is never reached gets an empty track. ValueError: a seed with a bad id, frame or box (empty
        or outside the frame), duplicate object ids, or a frame that is not uint8 (H, W, 3) of the first frame's size.
        """
        _check_seeds(seeds)
        if max_frames is not None and max_frames < 0:
            raise ValueError(f"max_frames must be >= 0, not {max_frames}")
        found: dict[int, tuple[list, list, list]] = {s.obj_id: ([], [], []) for s in seeds}
        if not seeds:
            return []
        first = min(s.frame for s in seeds)
        end = None if max_frames is None else first + max_frames
        by_frame: dict[int, list[BoxSeed]] = {}
        for seed in seeds:
            by_frame.setdefault(seed.frame, []).append(seed)
        session, size, boxes = None, None, {}
        for index, frame in enumerate(frames):
            size = check_frame(frame, index, size)
            if index == 0:
                boxes = {s.obj_id: _seed_box(s, size) for s in seeds}
            if (stop is not None and stop()) or (end is not None and index >= end):
                break
            if index < first:
                continue
            if session is None:
                session = self.processor.init_video_session(inference_device=self.device, dtype=self.dtype,
                                                            max_vision_features_cache_size=1)
            with hold():  # the device, one frame at a time (others' requests interleave)
                self._track_frame(session, index, frame, by_frame.get(index, []), boxes, found)
            self._prune(session, index)
        return [PropagatedTrack(s.obj_id, np.asarray(found[s.obj_id][0], np.int64),
                                np.asarray(found[s.obj_id][1], np.float32).reshape(-1, 4),
                                np.asarray(found[s.obj_id][2], np.float32)) for s in seeds]

    def _track_frame(self, session, index: int, frame: np.ndarray, new: list[BoxSeed], boxes: dict,
                     found: dict[int, tuple[list, list, list]]) -> None:
        """Run the model on one frame (adding the objects seeded on it) and append each non-empty mask's box."""
        height, width = frame.shape[:2]
        pixels = self.processor(images=frame, device=self.device, return_tensors="pt").pixel_values
        if new:  # all objects of a frame in one call: a second call would replace the first's "new inputs" list
            self.processor.add_inputs_to_inference_session(
                session, frame_idx=index, obj_ids=[s.obj_id for s in new],
                input_boxes=[[boxes[s.obj_id].tolist() for s in new]], original_size=(height, width))
        if session.get_obj_num() == 0:
            return
        out = self.model(inference_session=session, frame_idx=index, frame=pixels[0])
        logits = out.pred_masks.float()  # (N, 1, h, w) low-resolution logits over the whole (squashed) frame
        masks = self.processor.post_process_masks([logits], original_sizes=[(height, width)], binarize=True)[0][:, 0]
        xyxy, present = mask_boxes(masks)
        if out.object_score_logits is not None:
            scores = out.object_score_logits.float().reshape(-1).sigmoid()
        else:
            probs = logits.sigmoid()[:, 0]
            inside = probs > 0.5
            scores = (probs * inside).sum((1, 2)) / inside.sum((1, 2)).clamp(min=1)
        xyxy, present, scores = xyxy.tolist(), present.tolist(), scores.tolist()  # plain floats: no tensor kept
        for row, obj_id in enumerate(out.object_ids):
            if present[row]:
                found[obj_id][0].append(index)
                found[obj_id][1].append(xyxy[row])
                found[obj_id][2].append(scores[row])

    def _prune(self, session, index: int) -> None:
        """Drop from `session` everything SAM 2 will not read again once frame `index` is done.

        The next frame reads the spatial memory of its `memory_frames` predecessors and the object pointers of its
        `pointer_frames` predecessors plus every conditioning frame; stored mask logits are only re-read when a
        conditioning frame is re-run, which streaming never does.
        """
        (session.processed_frames or {}).pop(index, None)
        oldest_memory = index + 1 - self.memory_frames
        oldest_pointer = index + 1 - self.pointer_frames
        for obj_idx, outputs in session.output_dict_per_obj.items():
            for entry in outputs["cond_frame_outputs"].values():
                entry.pop("high_res_masks", None)
            prune_recent_outputs(outputs["non_cond_frame_outputs"], oldest_pointer, oldest_memory)
            tracked = session.frames_tracked_per_obj.get(obj_idx, {})
            for frame_idx in [f for f in tracked if f < oldest_pointer]:
                del tracked[frame_idx]


def _session_entries(session) -> dict[str, int]:
    """What a session holds per frame (largest count over objects): pixel frames, cached vision features,
    conditioning / non-conditioning outputs, outputs still holding spatial memory or mask logits, tracked marks."""
    outputs = list(session.output_dict_per_obj.values())
    non_cond = [o["non_cond_frame_outputs"] for o in outputs]
    return {
        "pixel_frames": len(session.processed_frames or {}),
        "vision_features": len(session.cache._vision_features),
        "cond_outputs": max((len(o["cond_frame_outputs"]) for o in outputs), default=0),
        "non_cond_outputs": max((len(n) for n in non_cond), default=0),
        "spatial_memories": max((sum("maskmem_features" in e for e in n.values()) for n in non_cond), default=0),
        "mask_logits": max((sum("high_res_masks" in e or "pred_masks" in e for e in n.values()) for n in non_cond),
                           default=0),
        "tracked_marks": max((len(t) for t in session.frames_tracked_per_obj.values()), default=0),
    }


def _check_seeds(seeds: list[BoxSeed]) -> None:
    seen = set()
    for seed in seeds:
        if isinstance(seed.obj_id, bool) or not isinstance(seed.obj_id, (int, np.integer)) or seed.obj_id < 1:
            raise ValueError(f"seed {seed.obj_id!r}: obj_id must be an int >= 1")
        if seed.obj_id in seen:
            raise ValueError(f"seed {seed.obj_id}: obj_id given twice")
        seen.add(seed.obj_id)
        if isinstance(seed.frame, bool) or not isinstance(seed.frame, (int, np.integer)) or seed.frame < 0:
            raise ValueError(f"seed {seed.obj_id}: frame must be an int >= 0, not {seed.frame!r}")
        xyxy = np.asarray(seed.xyxy, np.float64)
        if xyxy.shape != (4,) or not np.isfinite(xyxy).all():
            raise ValueError(f"seed {seed.obj_id}: xyxy must be 4 finite numbers, not {seed.xyxy!r}")


def _seed_box(seed: BoxSeed, size: tuple[int, int]) -> np.ndarray:
    """The seed's box clipped to the (H, W) frame; ValueError if nothing of it is left."""
    height, width = size
    xyxy = np.asarray(seed.xyxy, np.float64)
    clipped = np.array([np.clip(xyxy[0], 0, width), np.clip(xyxy[1], 0, height),
                        np.clip(xyxy[2], 0, width), np.clip(xyxy[3], 0, height)], np.float32)
    if not (clipped[2] > clipped[0] and clipped[3] > clipped[1]):
        raise ValueError(f"seed {seed.obj_id}: box {xyxy.tolist()} is empty or outside the {width}x{height} frame")
    return clipped
