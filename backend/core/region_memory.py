"""`RegionMemory`: the regions a zero-shot pipeline found on an image, kept so the same question is not asked twice.

A zero-shot pipeline (fixed weights for the life of a process) gives the same regions for the same image, label
config and parameters. A project asks that question again and again: its Connect pre-labelling, the held-out
comparison of each new detector version, and the re-prediction of a version that leaves some labels to the
zero-shot pipeline (LIME: ~4 s per image and view on a 2-core CPU). The key names all of it (`regions_key`); entries
are kept least recently used first out, within a byte budget (masks are stored bit-packed).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from backend.core.detections import Detections
from backend.core.lru import LruCache


def question_key(model_version: str, ontology, params) -> str:
    """What a zero-shot pipeline's regions depend on besides the image: its model_version, the label config as parsed
    (`ontology`: controls, prompts, class names) and the parameters that can change regions (`params.region_dict()`:
    a project that changes its review score or video sampling keeps its remembered regions)."""
    asked = hashlib.sha1(json.dumps([repr(ontology), params.region_dict()], sort_keys=True, default=str).encode())
    return f"{model_version}|{asked.hexdigest()}"


def image_key(image: np.ndarray) -> str:
    """The uint8 (H, W, 3) image: its shape and a hash of its pixels."""
    return f"{image.shape}|{hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()}"


def regions_key(model_version: str, ontology, params, image: np.ndarray) -> str:
    """The memory key of a zero-shot pipeline's regions of `image` (`question_key` + `image_key`)."""
    return f"{question_key(model_version, ontology, params)}|{image_key(image)}"


ENTRY_OVERHEAD = 1024  # bytes an entry costs besides its arrays and key (objects, headers, the LRU's node)


class _Stored:
    """A copy of a `Detections` (what callers do to theirs never reaches it) with its masks bit-packed (one bit per
    mask pixel instead of a byte); `nbytes`: what it costs, `key_bytes` included."""

    def __init__(self, dets: Detections, key_bytes: int):
        self.dets = Detections(dets.xyxy.copy(), dets.scores.copy(), dets.labels, dets.image_size)
        self.mask_shape = None if dets.masks is None else dets.masks.shape
        self.packed = None if dets.masks is None else np.packbits(dets.masks, axis=None)
        self.nbytes = ENTRY_OVERHEAD + key_bytes + dets.xyxy.nbytes + dets.scores.nbytes + \
            sum(len(label) + 50 for label in dets.labels) + (0 if self.packed is None else self.packed.nbytes)

    def detections(self) -> Detections:
        """A fresh `Detections` (own arrays) of what was stored."""
        masks = None
        if self.mask_shape is not None:
            count = int(np.prod(self.mask_shape))
            masks = np.unpackbits(self.packed, count=count).astype(bool).reshape(self.mask_shape)
        return Detections(self.dets.xyxy.copy(), self.dets.scores.copy(), self.dets.labels, self.dets.image_size,
                          masks)


class RegionMemory:
    """Thread-safe LRU of `Detections` by `regions_key`, at most `max_bytes` (0: keeps nothing; an entry larger than
    that is not kept). `hits` / `misses` count lookups."""

    def __init__(self, max_bytes: int):
        self._cache: LruCache[_Stored] = LruCache(max_bytes, lambda item: item.nbytes)

    def get(self, key: str) -> Detections | None:
        item = self._cache.get(key)
        return None if item is None else item.detections()

    def put(self, key: str, dets: Detections) -> None:
        self._cache.put(key, _Stored(dets, len(key)))

    def __len__(self) -> int:
        return len(self._cache)

    def status(self) -> dict:
        """For `/health`: images kept, MiB used of the limit, lookups answered and not."""
        return {"images": len(self), "mib": round(self.nbytes / 2**20, 1),
                "limit_mib": round(self.max_bytes / 2**20, 1), "hits": self.hits, "misses": self.misses}

    @property
    def max_bytes(self) -> int:
        return self._cache.capacity

    @property
    def nbytes(self) -> int:
        return self._cache.used

    @property
    def hits(self) -> int:
        return self._cache.hits

    @property
    def misses(self) -> int:
        return self._cache.misses
