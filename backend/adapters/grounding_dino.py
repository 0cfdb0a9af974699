"""Grounding DINO (transformers `GroundingDinoForObjectDetection`): text prompts → boxes.

Loaded from a hub id or a local `save_pretrained` directory (`DETECTOR_MODEL`). On CUDA the model runs
in bfloat16, on CPU in float32. Detected queries are mapped back to prompts through the tokenizer's
character offsets, never through decoded phrases, so every box carries the index of an exact prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from backend.adapters.preprocess import dino_output_hw, dino_pixels, size_field

MAX_TEXT_TOKENS = 250  # the model attends to at most 256 text tokens


@dataclass(frozen=True)
class PromptBoxes:
    """Raw detections of one image: float32 (N, 4) xyxy pixels, float32 (N,) scores, int (N,) prompt indices."""

    xyxy: np.ndarray
    scores: np.ndarray
    prompt_index: np.ndarray


def prompt_text(prompts: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """Prompts → the model's caption "a . b . c ." and each prompt's (start, end) character span."""
    parts, spans, cursor = [], [], 0
    for prompt in prompts:
        clean = " ".join(prompt.lower().replace(".", " ").split())
        spans.append((cursor, cursor + len(clean)))
        parts.append(clean)
        cursor += len(clean) + 3  # " . "
    return " . ".join(parts) + " .", spans


def token_prompt_matrix(offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> np.ndarray:
    """float32 (T, P): 1 where token t (by character offsets) lies inside prompt p's span."""
    matrix = np.zeros((len(offsets), len(spans)), np.float32)
    for t, (start, end) in enumerate(offsets):
        if end <= start:
            continue  # special tokens
        for p, (s, e) in enumerate(spans):
            if start >= s and end <= e:
                matrix[t, p] = 1.0
    return matrix


def same_size_batches(sizes: list[tuple[int, int]], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of at most `batch_size` whose (processed) sizes are equal.

    Padding changes what the backbone sees, so only equal sizes share a batch: every image gets
    exactly the regions it would get alone, and projects with one camera resolution batch fully.
    """
    groups: dict[tuple[int, int], list[int]] = {}
    for i, size in enumerate(sizes):
        groups.setdefault(size, []).append(i)
    return [ids[i:i + batch_size] for ids in groups.values() for i in range(0, len(ids), batch_size)]


class GroundingDinoDetector:
    """`detect(images, prompts, box_threshold, text_threshold)` → one `PromptBoxes` per image."""

    def __init__(self, source: str, device: str, batch_size: int | None = None, dtype: torch.dtype | None = None):
        from transformers import AutoProcessor, GroundingDinoForObjectDetection

        from backend.adapters.hub import load_pretrained

        self.name = source
        self.device = device
        self.dtype = dtype or (torch.bfloat16 if device.startswith("cuda") else torch.float32)
        self.processor = load_pretrained(AutoProcessor, source)
        self.model = load_pretrained(GroundingDinoForObjectDetection, source, dtype=self.dtype).to(device).eval()
        self.batch_size = batch_size or (16 if device.startswith("cuda") else 2)

    def _processed_hw(self, images: list[np.ndarray]) -> list[tuple[int, int]]:
        size = self.processor.image_processor.size
        shortest, longest = size_field(size, "shortest_edge"), size_field(size, "longest_edge")
        return [dino_output_hw(im.shape[0], im.shape[1], shortest, longest) for im in images]

    def _chunks(self, prompts: list[str]) -> list[list[int]]:
        """Split prompt indices into groups whose caption fits the text length limit."""
        chunks, current = [], []
        for i in range(len(prompts)):
            trial = current + [i]
            text, _ = prompt_text([prompts[j] for j in trial])
            if current and len(self.processor.tokenizer(text)["input_ids"]) > MAX_TEXT_TOKENS:
                chunks.append(current)
                trial = [i]
            current = trial
        return chunks + ([current] if current else [])

    @torch.inference_mode()
    def detect(self, images: list[np.ndarray], prompts: list[str], box_threshold: float,
               text_threshold: float) -> list[PromptBoxes]:
        """uint8 (H, W, 3) images of any sizes → boxes whose best prompt passes both thresholds.

        box score = highest token probability of the query; the query's prompt = the prompt whose
        tokens have the highest mean probability, kept if that mean reaches `text_threshold`.
        """
        results: list[list[PromptBoxes]] = [[] for _ in images]
        for chunk in self._chunks(prompts):
            text, spans = prompt_text([prompts[i] for i in chunk])
            encoded = self.processor.tokenizer(text, return_offsets_mapping=True)
            matrix = torch.from_numpy(token_prompt_matrix(encoded["offset_mapping"], spans)).to(self.device)
            chunk_index = torch.tensor(chunk, device=self.device)
            for batch_ids in same_size_batches(self._processed_hw(images), self.batch_size):
                batch = [images[i] for i in batch_ids]
                found = self._detect_batch(batch, text, matrix, chunk_index, box_threshold, text_threshold)
                for i, boxes in zip(batch_ids, found):
                    results[i].append(boxes)
        return [_concat(parts) for parts in results]

    def _detect_batch(self, batch, text, matrix, chunk_index, box_threshold, text_threshold) -> list[PromptBoxes]:
        tokens = self.processor.tokenizer([text] * len(batch), return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in tokens.items()}
        inputs["pixel_values"], inputs["pixel_mask"] = dino_pixels(batch, self.processor.image_processor,
                                                                   self.device, self.dtype)
        outputs = self.model(**inputs)
        sizes = [image.shape[:2] for image in batch]
        return decode_outputs(outputs, sizes, matrix, chunk_index, box_threshold, text_threshold)


def decode_outputs(outputs, sizes: list[tuple[int, int]], matrix: torch.Tensor, prompt_ids: torch.Tensor,
                   box_threshold: float, text_threshold: float) -> list[PromptBoxes]:
    """Model outputs of a batch → `PromptBoxes` per image (sizes: original (H, W) of each image).

    box score = highest token probability of the query; the query's prompt = the prompt whose tokens have
    the highest mean probability, kept if that mean reaches `text_threshold`; `prompt_ids` maps matrix
    columns to prompt indices.
    """
    n_tokens = matrix.shape[0]
    probs = outputs.logits[:, :, :n_tokens].float().sigmoid()  # (B, Q, T)
    in_prompt = matrix.sum(1) > 0
    box_scores = probs[:, :, in_prompt].max(dim=-1).values  # (B, Q)
    prompt_scores = probs @ matrix / matrix.sum(0).clamp(min=1)  # (B, Q, P) mean token probability
    best_score, best_prompt = prompt_scores.max(dim=-1)
    keep = (box_scores >= box_threshold) & (best_score >= text_threshold)
    boxes = outputs.pred_boxes.float()
    xyxy = torch.cat([boxes[..., :2] - boxes[..., 2:] / 2, boxes[..., :2] + boxes[..., 2:] / 2], dim=-1)
    out = []
    for b, (h, w) in enumerate(sizes):
        k = keep[b]
        scale = torch.tensor([w, h, w, h], device=xyxy.device, dtype=xyxy.dtype)
        out.append(PromptBoxes((xyxy[b][k] * scale).cpu().numpy(), box_scores[b][k].cpu().numpy(),
                               prompt_ids[best_prompt[b][k]].cpu().numpy()))
    return out


def _concat(parts: list[PromptBoxes]) -> PromptBoxes:
    if len(parts) == 1:
        return parts[0]
    return PromptBoxes(np.concatenate([p.xyxy for p in parts]).reshape(-1, 4),
                       np.concatenate([p.scores for p in parts]), np.concatenate([p.prompt_index for p in parts]))
