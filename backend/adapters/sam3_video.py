"""SAM 3 video (transformers `Sam3VideoModel` + `Sam3VideoProcessor`): text concepts → every instance, followed.

Loaded from a hub id or a local `save_pretrained` directory: facebook/sam3 holds the image detector and the video
tracker in one checkpoint, so this loads from the same source as `backend.adapters.sam3`. bfloat16 on CUDA, float32
on CPU. Frames are streamed one at a time through the model's streaming mode (`init_video_session()` without a
video, then `model(inference_session, frame_idx, frame)` per frame): each frame the detector finds every instance of
every prompt, the tracker propagates the objects it already follows, detections that match no object start new ones,
and what the session keeps per frame is pruned to what the model still reads.

Streaming mode, as transformers implements it, has no "hotstart": objects are reported from the frame they are first
detected on, and none is removed afterwards for being a duplicate or unmatched (those heuristics need future frames).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from typing import ContextManager
from dataclasses import dataclass

import numpy as np
import torch

from backend.adapters.video_masks import check_frame, mask_boxes, prune_recent_outputs

_END = object()  # the end of the frames


@dataclass(frozen=True)
class ConceptTrack:
    """One object followed through the clip: obj_id (int), prompt_index (index into the prompts given),
    frames int64 (K,) 0-based indices into the frames given where the object is present (non-empty mask),
    xyxy float32 (K, 4) pixel boxes (tight box of the mask, exclusive right/bottom edges, pixels of the frames given),
    scores float32 (K,) in [0, 1]."""

    obj_id: int
    prompt_index: int
    frames: np.ndarray
    xyxy: np.ndarray
    scores: np.ndarray


class _FrameWindow(dict):
    """The session's store of preprocessed frames, pruned to none after each frame is done, whose length stays the
    number of frames added so far: the tracker reads that length as the clip's length (it caps how many past object
    pointers it reads by it), so it must not shrink when the pixels are dropped."""

    def __init__(self):
        super().__init__()
        self.added = 0

    def __setitem__(self, frame_idx, pixels):
        super().__setitem__(frame_idx, pixels)
        self.added = max(self.added, int(frame_idx) + 1)

    def __len__(self):
        return self.added


class Sam3VideoTracker:
    """`track(frames, prompts, threshold)` → one `ConceptTrack` per object found, for every text prompt at once.

    Memory stays bounded per object however long the clip: after every frame the inference session is pruned to what
    the model reads later (results are identical to an unpruned session). The frame's pixels and vision features are
    dropped as soon as it is done; per-frame bookkeeping (tracker scores, suppressions, tracked marks, mask inputs)
    keeps nothing past its frame, and the hotstart lists (unmatched / duplicate frames per object) their last
    `hotstart_unmatch_thresh` / `hotstart_dup_thresh` (8) entries. Per object the session keeps the non-conditioning
    outputs of the last `max_object_pointers_in_encoder - 1` (15) frames, of which only the last `num_maskmem - 1` (6)
    keep their spatial memory (maskmem features + positional encoding, 72·72 x 64 bf16 each at 1008 px, ~1.3 MB
    together) and the older ones only their object pointer (256 values) and score; and its conditioning frames (the
    frame it was detected on, plus one every `recondition_every_nth_frame` (16) frames where a confident detection
    re-confirms it), of which only the `max_cond_frame_num` (4) most recent keep their spatial memory, copied out of
    the whole frame's batch so they pin no other object's. transformers reads the object pointer of *every* past
    conditioning frame, so those pointers (~1 KB each) are kept: over 1,000 frames at most ~64 of them and 10
    memories (~13 MB) per object. No mask logits are kept past their frame. Per frame, on top: one frame's features,
    and the processor's full-resolution masks (objects x H x W) while their boxes are taken.

    Objects are never dropped in streaming mode, so the session grows with the number of distinct objects found (capped
    by the checkpoint's `max_num_objects`, 10,000 in facebook/sam3), and so does the per-frame cost: the tracker runs
    once per object and frame.
    """

    def __init__(self, source: str, device: str, dtype: torch.dtype | None = None):
        from transformers import Sam3VideoModel, Sam3VideoProcessor

        from backend.adapters.hub import load_pretrained

        self.name = source
        self.device = device
        self.dtype = dtype or (torch.bfloat16 if device.startswith("cuda") else torch.float32)
        self.processor = load_pretrained(Sam3VideoProcessor, source)
        self.model = load_pretrained(Sam3VideoModel, source, dtype=self.dtype).to(device).eval()
        config = self.model.config
        tracker = config.tracker_config
        self.memory_frames = max(int(tracker.num_maskmem) - 1, 0)  # past frames whose spatial memory is read
        self.pointer_frames = max(int(tracker.max_object_pointers_in_encoder) - 1, self.memory_frames)
        self.cond_frames = int(tracker.max_cond_frame_num)  # most recent conditioning frames whose memory is read
        # (<= 0: all are kept; transformers reads all for -1, and an odd selection for 0)
        self.unmatched_marks = max(int(config.hotstart_unmatch_thresh), 1)
        self.duplicate_marks = max(int(config.hotstart_dup_thresh), 1)
        self.max_prompt_tokens = int(config.detector_config.text_config.max_position_embeddings)
        # the checkpoint's margin between keeping a detection and starting a new object from one (0.5 / 0.7)
        self.new_object_margin = max(float(config.new_det_thresh) - float(config.score_threshold_detection), 0.0)
        self._lock = threading.Lock()  # the thresholds are model attributes: set and used under one lock

    @torch.inference_mode()
    def track(self, frames: Iterable[np.ndarray], prompts: list[str], threshold: float = 0.5,
              max_frames: int | None = None, stop: Callable[[], bool] | None = None,
              hold: Callable[[], ContextManager] = nullcontext) -> list[ConceptTrack]:
        """Find and follow every instance of each prompt through the clip; tracks in order of object id.

        frames: uint8 (H, W, 3) RGB frames of one video, all one size, read lazily (a generator is fine, one frame at
        a time). `threshold` is the model's own detection threshold (`score_threshold_detection`: detections under it
        are ignored) and sets its new-object threshold (`new_det_thresh`) the checkpoint's margin above it (0.2 for
        facebook/sam3, whose defaults are thus threshold 0.5); a frame where an object's score is under `threshold`
        is left out of its track. An object's score on a frame is the tracker's object score (sigmoid of its
        object-score logit), or its detection score on the frame it was first detected on. Each track has at least
        one frame; several prompts that are the same text share the first one's index. `max_frames` caps the
        frames processed; `stop()` returning True ends early (checked before each frame is read); `hold()` is entered
        around each frame's model call (the device gate); either way what
        was tracked is returned. A prompt longer than the text encoder reads is cut word by word from its end.
        ValueError: a prompt that is not a non-empty string, a threshold outside [0, 1], or a frame that is not uint8 (H, W, 3) of the first frame's size.
        """
        prompts = self._fitted_prompts(list(prompts))
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number)) \
                or not math.isfinite(threshold) or not 0 <= threshold <= 1:
            raise ValueError(f"threshold must be a number in [0, 1], not {threshold!r}")
        if max_frames is not None and max_frames < 0:
            raise ValueError(f"max_frames must be >= 0, not {max_frames}")
        if not prompts:
            return []
        thresholds = (float(threshold), min(float(threshold) + self.new_object_margin, 1.0))
        found: dict[int, tuple[int, list, list, list]] = {}
        session, size, prompt_index = None, None, {}
        iterator = iter(frames)
        index = 0
        while (max_frames is None or index < max_frames) and not (stop is not None and stop()):
            frame = next(iterator, _END)
            if frame is _END:
                break
            size = check_frame(frame, index, size)
            if session is None:
                session, prompt_index = self._new_session(prompts)
            with hold():  # the device, one frame at a time (others' requests interleave)
                self._track_frame(session, index, frame, thresholds, prompt_index, found)
            self._prune(session, index)
            index += 1
        return [ConceptTrack(obj_id, p, np.asarray(f, np.int64), np.asarray(b, np.float32).reshape(-1, 4),
                             np.asarray(s, np.float32))
                for obj_id, (p, f, b, s) in sorted(found.items()) if f]

    def _fitted_prompts(self, prompts: list[str]) -> list[str]:
        """The prompts, each cut word by word from its end until the text encoder reads all of it."""
        out = []
        for i, prompt in enumerate(prompts):
            if not isinstance(prompt, str) or not prompt.strip():
                raise ValueError(f"prompt {i}: expected a non-empty string, got {prompt!r}")
            words = prompt.split()
            while len(words) > 1 and len(self.processor.tokenizer(" ".join(words))["input_ids"]) > \
                    self.max_prompt_tokens:
                words.pop()
            out.append(" ".join(words))
        return out

    def _new_session(self, prompts: list[str]):
        """A streaming session holding the prompts; and prompt id (the session's) → index into `prompts`."""
        session = self.processor.init_video_session(inference_device=self.device, dtype=self.dtype,
                                                    max_vision_features_cache_size=1)
        session.processed_frames = _FrameWindow()
        self.processor.add_text_prompt(session, prompts)
        first = {}
        for i, prompt in enumerate(prompts):
            first.setdefault(prompt, i)
        return session, {prompt_id: first[text] for prompt_id, text in session.prompts.items()}

    def _track_frame(self, session, index: int, frame: np.ndarray, thresholds: tuple[float, float],
                     prompt_index: dict[int, int], found: dict[int, tuple[int, list, list, list]]) -> None:
        """Run the model on one frame and append each object's box where its mask is non-empty and its score is at
        least the threshold."""
        height, width = frame.shape[:2]
        pixels = self.processor(images=frame, device=self.device, return_tensors="pt").pixel_values
        with self._lock:
            self.model.score_threshold_detection, self.model.new_det_thresh = thresholds
            out = self.model(inference_session=session, frame_idx=index, frame=pixels[0])
        result = self.processor.postprocess_outputs(session, out, original_sizes=[[height, width]])
        obj_ids = result["object_ids"].tolist()
        if not obj_ids:
            return
        # boxes from the final masks (the processor's own boxes predate its non-overlap step, and include the edge)
        xyxy, present = mask_boxes(result["masks"])
        xyxy, present = xyxy.cpu().numpy(), present.cpu().numpy()
        scores = out.obj_id_to_tracker_score or {}
        for row, obj_id in enumerate(obj_ids):
            score = float(scores.get(obj_id, out.obj_id_to_score.get(obj_id, 0.0)))
            if not present[row] or score < thresholds[0]:
                continue
            entry = found.setdefault(obj_id, (prompt_index[session.obj_id_to_prompt_id[obj_id]], [], [], []))
            entry[1].append(index)
            entry[2].append(xyxy[row])
            entry[3].append(min(max(score, 0.0), 1.0))

    def _prune(self, session, index: int) -> None:
        """Drop from `session` everything the model will not read again once frame `index` is done.

        The next frame reads the spatial memory of its `memory_frames` predecessors and of the `cond_frames` most
        recent conditioning frames, the object pointers of its `pointer_frames` predecessors and of every conditioning
        frame, and of per-frame bookkeeping only its own entry; mask logits and mask inputs are only re-read on their
        own frame, which streaming never revisits.
        """
        session.processed_frames.pop(index, None)
        session.cache.clear_all()
        oldest_memory = index + 1 - self.memory_frames
        oldest_pointer = index + 1 - self.pointer_frames
        for outputs in session.output_dict_per_obj.values():
            conditioning = outputs["cond_frame_outputs"]
            recent = set(sorted(conditioning)[-self.cond_frames:]) if self.cond_frames > 0 else set(conditioning)
            for frame_idx, entry in conditioning.items():
                entry.pop("high_res_masks", None)
                entry.pop("pred_masks", None)
                if frame_idx not in recent and frame_idx < oldest_memory:
                    entry.pop("maskmem_features", None)
                    entry.pop("maskmem_pos_enc", None)
                _compact(entry)
            prune_recent_outputs(outputs["non_cond_frame_outputs"], oldest_pointer, oldest_memory)
        for per_obj in (session.frames_tracked_per_obj, session.mask_inputs_per_obj, session.point_inputs_per_obj):
            for per_frame in per_obj.values():
                for frame_idx in [f for f in per_frame if f <= index]:
                    del per_frame[frame_idx]
        for per_frame in (session.obj_id_to_tracker_score_frame_wise, session.suppressed_obj_ids):
            for frame_idx in [f for f in per_frame if f <= index]:
                del per_frame[frame_idx]
        for marks in session.unmatched_frame_inds.values():
            del marks[:-self.unmatched_marks]
        for marks in session.overlap_pair_to_frame_inds.values():
            del marks[:-self.duplicate_marks]


def _compact(entry: dict) -> None:
    """Give a kept memory its own storage where it is a slice of the whole frame's batch (all objects' memories,
    encoded together): a conditioning frame outlives that frame's other memories, and would keep them all alive."""
    for key in ("maskmem_features", "maskmem_pos_enc"):
        value = entry.get(key)
        if isinstance(value, torch.Tensor) and _oversized(value):
            entry[key] = value.clone()


def _oversized(value: torch.Tensor) -> bool:
    """Whether the tensor holds on to more storage than its own elements."""
    return value.untyped_storage().nbytes() > value.numel() * value.element_size()


def _session_entries(session) -> dict[str, int]:
    """What a session holds per frame (largest count over objects): pixel frames, cached vision features,
    conditioning / non-conditioning outputs, those holding spatial memory or mask logits, tracked marks, mask
    inputs, per-frame score and suppression records, longest hotstart frame list, conditioning memories that are
    slices of a larger (whole-frame) tensor; and the number of objects."""
    outputs = list(session.output_dict_per_obj.values())
    cond = [o["cond_frame_outputs"] for o in outputs]
    non_cond = [o["non_cond_frame_outputs"] for o in outputs]

    def most(values) -> int:
        return max(values, default=0)

    def count(dicts, key) -> int:
        return most(sum(key in e for e in d.values()) for d in dicts)

    return {
        "pixel_frames": sum(1 for _ in session.processed_frames or {}),  # held, not counted as added
        "vision_features": len(session.cache._vision_features),
        "cond_outputs": most(len(c) for c in cond),
        "cond_memories": count(cond, "maskmem_features"),
        "non_cond_outputs": most(len(n) for n in non_cond),
        "spatial_memories": count(non_cond, "maskmem_features"),
        "mask_logits": most(sum("high_res_masks" in e or "pred_masks" in e for d in (c, n) for e in d.values())
                            for c, n in zip(cond, non_cond)),
        "tracked_marks": most(len(t) for t in session.frames_tracked_per_obj.values()),
        "mask_inputs": most(len(m) for m in session.mask_inputs_per_obj.values()),
        "score_frames": len(session.obj_id_to_tracker_score_frame_wise),
        "suppression_frames": len(session.suppressed_obj_ids),
        "hotstart_marks": most(len(m) for m in [*session.unmatched_frame_inds.values(),
                                                 *session.overlap_pair_to_frame_inds.values()]),
        "shared_cond_memories": most(sum(_oversized(e[k]) for e in c.values() for k in ("maskmem_features",
                                                                                      "maskmem_pos_enc") if k in e)
                                     for c in cond),
        "objects": len(outputs),
    }
