"""SAM 3 (transformers `Sam3Model`): text concepts → every instance of each, as boxes, scores and masks, in one model.

Loaded from a hub id or a local `save_pretrained` directory (`SAM3_MODEL`). On CUDA the model runs in bfloat16, on
CPU in float32. Each image is encoded once per batch; each prompt's text once per call; then the light DETR decoder
and mask head run once per prompt on the cached image features. Every instance keeps the index of the exact prompt
that found it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class ConceptInstances:
    """Instances found in one image: float32 (N, 4) xyxy pixels, float32 (N,) scores in [0, 1], int64 (N,) prompt
    indices, and bool (N, H, W) masks at the image's size (None when masks were not asked for)."""

    xyxy: np.ndarray
    scores: np.ndarray
    prompt_index: np.ndarray
    masks: np.ndarray | None


class Sam3ConceptSegmenter:
    """`segment(images, prompts, threshold, mask_threshold, with_masks)` → one `ConceptInstances` per image."""

    def __init__(self, source: str, device: str, batch_size: int | None = None, dtype: torch.dtype | None = None):
        from transformers import Sam3Model, Sam3Processor

        from backend.adapters.hub import load_pretrained

        self.name = source
        self.device = device
        self.dtype = dtype or (torch.bfloat16 if device.startswith("cuda") else torch.float32)
        self.processor = load_pretrained(Sam3Processor, source)
        self.model = load_pretrained(Sam3Model, source, dtype=self.dtype).to(device).eval()
        self.batch_size = batch_size or (8 if device.startswith("cuda") else 2)
        self.text_tokens = int(self.model.config.text_config.max_position_embeddings)  # longer prompts are cut

    @torch.inference_mode()
    def segment(self, images: list[np.ndarray], prompts: list[str], threshold: float, mask_threshold: float = 0.5,
                with_masks: bool = True) -> list[ConceptInstances]:
        """uint8 (H, W, 3) images of any sizes → instances whose score reaches `threshold`, for every prompt.

        Masks are the pixels whose probability reaches `mask_threshold`, at each image's size; boxes are the model's
        box head (in pixels of the image).
        """
        if not prompts:
            return [_empty(image, with_masks) for image in images]
        text = self.processor.tokenizer(prompts, padding="max_length", max_length=self.text_tokens, truncation=True,
                                        return_tensors="pt")  # the processor pads but never truncates
        text_embeds = self.model.get_text_features(input_ids=text["input_ids"].to(self.device),
                                                   attention_mask=text["attention_mask"].to(self.device))
        out: list[ConceptInstances] = []
        for start in range(0, len(images), self.batch_size):
            batch = images[start:start + self.batch_size]
            out.extend(self._segment_batch(batch, text_embeds, text["attention_mask"].to(self.device), threshold,
                                           mask_threshold, with_masks))
        return out

    def _segment_batch(self, batch: list[np.ndarray], text_embeds, attention_mask: torch.Tensor, threshold: float,
                       mask_threshold: float, with_masks: bool) -> list[ConceptInstances]:
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        pixels = self.processor(images=batch, return_tensors="pt")["pixel_values"].to(self.device, self.dtype)
        vision = self.model.get_vision_features(pixel_values=pixels)
        sizes = [image.shape[:2] for image in batch]
        found: list[list[tuple[int, dict]]] = [[] for _ in batch]
        n = len(batch)
        for p in range(attention_mask.shape[0]):
            prompt_embeds = BaseModelOutputWithPooling(
                pooler_output=text_embeds.pooler_output[p:p + 1].expand(n, -1, -1))
            outputs = self.model(vision_embeds=vision, text_embeds=prompt_embeds,
                                 attention_mask=attention_mask[p:p + 1].expand(n, -1))
            results = self.processor.post_process_instance_segmentation(  # it keeps values above its thresholds
                _float(outputs), threshold=_below(threshold), mask_threshold=_below(mask_threshold),
                target_sizes=sizes)
            for i, result in enumerate(results):
                found[i].append((p, result))
        return [_instances(parts, size, with_masks) for parts, size in zip(found, sizes)]


def _below(threshold: float) -> float:
    """The largest float32 under `threshold` (scores are float32): "above it" then means "at least `threshold`"."""
    return float(np.nextafter(np.float32(threshold), np.float32(-np.inf)))


def _float(outputs):
    """The outputs post-processing reads, in float32 (bfloat16 on CUDA)."""
    for key in ("pred_masks", "pred_boxes", "pred_logits", "presence_logits"):
        value = getattr(outputs, key, None)
        if value is not None:
            outputs[key] = value.float()
    return outputs


def _instances(parts: list[tuple[int, dict]], size: tuple[int, int], with_masks: bool) -> ConceptInstances:
    """Per-prompt post-processed results of one image → one `ConceptInstances`."""
    h, w = size
    xyxy, scores, index, masks = [], [], [], []
    for p, result in parts:
        k = len(result["scores"])
        xyxy.append(result["boxes"].float().cpu().numpy().reshape(-1, 4))
        scores.append(result["scores"].float().cpu().numpy().reshape(-1))
        index.append(np.full(k, p, np.int64))
        if with_masks:
            masks.append(result["masks"].bool().cpu().numpy().reshape(k, h, w))
    return ConceptInstances(np.concatenate(xyxy).astype(np.float32), np.concatenate(scores).astype(np.float32),
                            np.concatenate(index),
                            np.concatenate(masks) if with_masks else None)


def _empty(image: np.ndarray, with_masks: bool) -> ConceptInstances:
    h, w = image.shape[:2]
    return ConceptInstances(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64),
                            np.zeros((0, h, w), bool) if with_masks else None)
