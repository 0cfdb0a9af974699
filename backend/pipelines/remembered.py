"""`RememberedPipeline`: a zero-shot pipeline whose regions of an image, once found, come from a `RegionMemory`.

Only the images the memory does not hold go through the pipeline's own steps (one call for all of them); the
others cost a hash of their pixels. The pipeline's name, model_version, models and coverage are its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from backend.adapters.base import LazyModel
from backend.core.detections import Detections
from backend.core.ontology import Ontology
from backend.core.params import PredictParams
from backend.core.region_memory import RegionMemory, regions_key
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
    def __init__(self, pipeline, memory: RegionMemory):
        self.pipeline = pipeline
        self.memory = memory
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
        keys = [regions_key(self.pipeline.model_version, ontology, params, image) for image in images]
        found = [self.memory.get(key) for key in keys]
        todo = [i for i, dets in enumerate(found) if dets is None]
        work = _RememberedWork(found, keys, todo)
        if todo:
            work.inner = self.pipeline.prepare([images[i] for i in todo], ontology, params)
        return work

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
