"""SAM (transformers `SamModel`): boxes or clicks → masks, with an LRU cache of image embeddings.

Loaded from a hub id or a local `save_pretrained` directory (`SAM_MODEL`); float16 on CUDA, float32 on
CPU. Boxes are xyxy pixels of the original image; points are (x, y) pixels; masks come back as bool
(H, W) arrays of the original image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from backend.adapters.preprocess import sam_pixels
from backend.core.lru import LruCache


@dataclass
class ImageEmbedding:
    """SAM's image embedding (1, C, h, w) plus the sizes its processor needs to map masks back."""

    embedding: torch.Tensor
    original_hw: tuple[int, int]  # (height, width) of the image
    reshaped_hw: tuple[int, int]  # (height, width) it was resized to before padding


class EmbeddingCache(LruCache[ImageEmbedding]):
    """Thread-safe LRU of `ImageEmbedding`s keyed by a caller-chosen string (e.g. the image URL), `capacity` items."""


class SamSegmenter:
    """Masks from box or point prompts; `embed` is the expensive step, batched over images."""

    def __init__(self, source: str, device: str, cache_size: int = 32, batch_size: int | None = None,
                 dtype: torch.dtype | None = None):
        from transformers import SamModel, SamProcessor

        from backend.adapters.hub import load_pretrained

        self.name = source
        self.device = device
        self.dtype = dtype or (torch.float16 if device.startswith("cuda") else torch.float32)
        self.processor = load_pretrained(SamProcessor, source)
        self.model = load_pretrained(SamModel, source, dtype=self.dtype).to(device).eval()
        self.cache = EmbeddingCache(cache_size)
        self.batch_size = batch_size or (16 if device.startswith("cuda") else 2)

    @torch.inference_mode()
    def embed(self, images: list[np.ndarray]) -> list[ImageEmbedding]:
        """uint8 (H, W, 3) images → one embedding each (encoder run in batches)."""
        out = []
        for start in range(0, len(images), self.batch_size):
            batch = images[start:start + self.batch_size]
            pixels, originals_hw, resized_hw = sam_pixels(batch, self.processor.image_processor, self.device, self.dtype)
            embeddings = self.model.get_image_embeddings(pixels)
            for i in range(len(batch)):
                out.append(ImageEmbedding(embeddings[i:i + 1], originals_hw[i], resized_hw[i]))
        return out

    def embed_cached(self, key: str, image: np.ndarray) -> ImageEmbedding:
        item = self.cache.get(key)
        if item is None:
            item = self.embed([image])[0]
            self.cache.put(key, item)
        return item

    @torch.inference_mode()
    def masks_from_boxes(self, embedding: ImageEmbedding, xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """float (N, 4) xyxy boxes → bool (N, H, W) masks and float32 (N,) predicted IoU scores."""
        h, w = embedding.original_hw
        if len(xyxy) == 0:
            return np.zeros((0, h, w), bool), np.zeros(0, np.float32)
        boxes = self._to_input(np.asarray(xyxy, np.float32).reshape(-1, 2), embedding).reshape(1, -1, 4)
        outputs = self.model(image_embeddings=embedding.embedding, input_boxes=boxes, multimask_output=False)
        return self._masks(outputs.pred_masks, embedding)[:, 0], outputs.iou_scores[0, :, 0].float().cpu().numpy()

    @torch.inference_mode()
    def mask_from_prompts(self, embedding: ImageEmbedding, points: np.ndarray, point_labels: np.ndarray,
                          box: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """Clicks (float (K, 2) x, y pixels; labels 1 positive / 0 negative) and/or one xyxy box → the
        best of SAM's candidate masks as bool (H, W), with its predicted IoU."""
        kwargs = {}
        if len(points):
            coords = self._to_input(np.asarray(points, np.float32), embedding)
            kwargs["input_points"] = coords.reshape(1, 1, -1, 2)
            kwargs["input_labels"] = torch.as_tensor(point_labels, device=self.device).reshape(1, 1, -1).long()
        if box is not None:
            kwargs["input_boxes"] = self._to_input(np.asarray(box, np.float32).reshape(2, 2), embedding).reshape(1, 1, 4)
        multimask = box is None and len(points) == 1
        outputs = self.model(image_embeddings=embedding.embedding, multimask_output=multimask, **kwargs)
        scores = outputs.iou_scores[0, 0].float()
        best = int(scores.argmax())
        masks = self._masks(outputs.pred_masks, embedding)[0]
        return masks[best], float(scores[best])

    def _to_input(self, xy: np.ndarray, embedding: ImageEmbedding) -> torch.Tensor:
        """Pixel (x, y) of the original image → SAM's resized input frame, on the device."""
        (h, w), (rh, rw) = embedding.original_hw, embedding.reshaped_hw
        scale = np.array([rw / w, rh / h], np.float32)
        return torch.from_numpy(xy * scale).to(self.device, self.dtype)

    def _masks(self, pred_masks: torch.Tensor, embedding: ImageEmbedding) -> np.ndarray:
        masks = self.processor.post_process_masks(pred_masks.float(), [list(embedding.original_hw)],
                                                  [list(embedding.reshaped_hw)])
        return masks[0].cpu().numpy().astype(bool)
