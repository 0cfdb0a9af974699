"""`RememberedPipeline`: a zero-shot pipeline whose regions of an image, once found, come from a `RegionMemory`.

Only the images the memory does not hold go through the pipeline's own steps (one call for all of them); the
others cost a hash of their pixels, and when none is left the device is not taken (`needs_device`). The pipeline's
name, model_version, models and coverage are its own.

As a trained version's fallback (`serves`: the labels left to the zero-shot pipeline) it is asked with the project's
whole label config and answers for `serves` only: from the answer to the whole config when one is remembered (the
project's pre-labels, as the zero-shot pipeline served it alone) and no region of it was cut by `max_regions` (so
every region of `serves` is in it), else by asking the pipeline for `serves` alone (remembered as well).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from backend.adapters.base import LazyModel
from backend.core.detections import Detections
from backend.core.ontology import Ontology
from backend.core.params import PredictParams
from backend.core.region_memory import RegionMemory, image_key, question_key
from backend.pipelines.base import Steps
from backend.pipelines.coverage import Coverage


@dataclass
class _RememberedWork:
    """found: one entry per image (None until known); keys: their memory keys; todo: indices of the images the
    pipeline runs on; inner: its prepared work for them (then its raw output)."""

    found: list[Detections | None]
    keys: list[str]
    todo: list[int]
    inner: Any = None


class RememberedPipeline(Steps):
    def __init__(self, pipeline, memory: RegionMemory, serves: tuple[str, ...] | None = None):
        self.pipeline = pipeline
        self.memory = memory
        self.serves = serves
        self.name = pipeline.name

    @property
    def model_version(self) -> str:
        return self.pipeline.model_version

    def required_models(self) -> list[LazyModel]:
        return self.pipeline.required_models()

    def load(self, ontology: Ontology | None = None) -> None:
        self.pipeline.load(ontology)

    def coverage(self, ontology: Ontology, params: PredictParams) -> Coverage:
        return self.pipeline.coverage(ontology, params)

    def prepare(self, images: list[np.ndarray], ontology: Ontology, params: PredictParams) -> _RememberedWork:
        version = self.pipeline.model_version
        asked = ontology if self.serves is None else ontology.restricted_to(self.serves)
        question, whole = question_key(version, asked, params), question_key(version, ontology, params)
        pixels = [image_key(image) for image in images]
        keys = [f"{question}|{p}" for p in pixels]
        found = [self._from_whole(f"{whole}|{p}", params) if self.serves is not None else None for p in pixels]
        found = [dets if dets is not None else self.memory.get(key) for dets, key in zip(found, keys)]
        todo = [i for i, dets in enumerate(found) if dets is None]
        work = _RememberedWork(found, keys, todo)
        if todo:
            work.inner = self.pipeline.prepare([images[i] for i in todo], asked, params)
        return work

    def _from_whole(self, key: str, params: PredictParams) -> Detections | None:
        """The regions of `serves` in the remembered answer to the whole config; None when there is none or
        `max_regions` may have cut some of them."""
        whole = self.memory.get(key)
        if whole is None or len(whole) >= params.max_regions:
            return None
        return whole.select([i for i, label in enumerate(whole.labels) if label in self.serves])

    def needs_device(self, work: _RememberedWork) -> bool:
        """Whether `forward` runs a model (some image was not remembered)."""
        return bool(work.todo)

    def forward(self, work: _RememberedWork) -> _RememberedWork:
        if work.todo:
            work.inner = self.pipeline.forward(work.inner)
        return work

    def finish(self, work: _RememberedWork) -> list[Detections]:
        if work.todo:
            for i, dets in zip(work.todo, self.pipeline.finish(work.inner)):
                self.memory.put(work.keys[i], dets)
                work.found[i] = dets
        return list(work.found)
