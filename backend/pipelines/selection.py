"""Which pipeline serves a project's request, and running it on the process's device.

- `PIPELINE` (or the project's `extra_params.pipeline`) names it; `auto` serves the project's active trained
  detector when it has one (else its trained classifier through LIME), otherwise the first of `AUTO_ORDER` whose
  models load (`resolve`: a pick whose weights fail hands over to the next one there, before anything runs).
- A request or job resolves its pipeline once and runs that one (`run` returns detections only), so everything it
  makes carries one model_version.
- Trained versions are built once per process and version (`VersionCache`); a project's replaced version is
  dropped, so its weights free their memory.
- A zero-shot pipeline's regions of an image are remembered (`RegionMemory`, `REGION_MEMORY_MB`): a project's
  pre-labels, its held-out comparisons and the re-prediction of a version that leaves labels to the zero-shot
  pipeline ask it the same question; only images it has not answered for run it again.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

import numpy as np

from backend.adapters.base import LazyModel
from backend.adapters.hub import hub_probe_nonblocking
from backend.adapters.model_set import ModelSet
from backend.adapters.trained_detector import TrainedDetector
from backend.core.detections import Detections
from backend.core.device import PREDICT, DeviceGate
from backend.core.errors import BadRequest, ModelUnavailable
from backend.core.ontology import Ontology
from backend.core.params import PredictParams
from backend.core.region_memory import RegionMemory
from backend.pipelines.base import Pipeline, run_pipeline
from backend.pipelines.interactive import InteractivePipeline
from backend.pipelines.lime_boxes import LimeBoxesPipeline
from backend.pipelines.remembered import RememberedPipeline
from backend.pipelines.catalog import AUTO_ORDER, build_pipelines, check_pipeline_name
from backend.pipelines.trained import TrainedDetectorPipeline, unknown_labels
from backend.pipelines.video_boxes import BoxCarrier
from backend.registry.versions import CLASSIFIER, DETECTOR, Registry, Version

log = logging.getLogger(__name__)


class VersionCache:
    """`factory()` once per registry version and process; building another version of the same project and kind
    drops the older one."""

    def __init__(self) -> None:
        self._items: dict[tuple[int, str, str], object] = {}
        self._lock = threading.Lock()

    def get(self, version: Version, factory: Callable[[], object]):
        key = (version.project_id, version.kind, version.name)
        with self._lock:
            if key not in self._items:
                for old in [k for k in self._items if k[:2] == key[:2]]:
                    del self._items[old]
                self._items[key] = factory()
            return self._items[key]


class PipelineSelector:
    def __init__(self, default: str, models: ModelSet, registry: Registry, gate: DeviceGate,
                 memory: RegionMemory | None = None):
        self.default = check_pipeline_name(default)
        self.memory = memory if memory is not None else RegionMemory(0)  # zero-shot regions by image
        self.models = models
        self.registry = registry
        self.gate = gate
        self.pipelines = build_pipelines(models)
        self.carrier = BoxCarrier(models.video_tracker, gate)  # annotators' video boxes through the next frames
        self._versions = VersionCache()

    def pipeline(self, requested: str = "", load: bool = False, ontology: Ontology | None = None) -> Pipeline:
        """The pipeline `requested` (extra_params) or `PIPELINE` names; `auto` picks the first of `AUTO_ORDER`
        whose models are loaded or look loadable (nothing is loaded here), or with `load` the first whose models
        for `ontology` load (`Pipeline.load`). Raises `BadRequest` / `ModelUnavailable` (with `load`: also when the
        named pipeline's models fail)."""
        name = requested or self.default
        if name == "auto":
            for candidate in AUTO_ORDER:
                pipeline = self.pipelines[candidate]
                if all(m.available() for m in pipeline.required_models()) and (
                        not load or _loads(pipeline, ontology)):
                    return pipeline
            raise ModelUnavailable(f"no pipeline can run: {self.models.status()}")
        if name not in self.pipelines:
            raise BadRequest(f"pipeline {name!r} is not available here; available: {sorted(self.pipelines)}")
        return _loaded(self.pipelines[name], ontology) if load else self.pipelines[name]

    def resolve(self, project_id: int | None, params: PredictParams, ontology: Ontology) -> Pipeline:
        """The pipeline a request or job runs, its models loaded (`for_project` with `load`): what it makes carries
        its model_version, whatever fails later. Raises `BadRequest` / `ModelUnavailable`."""
        return self.for_project(project_id, params, ontology, load=True)

    def for_project(self, project_id: int | None, params: PredictParams, ontology: Ontology,
                    load: bool = False) -> Pipeline:
        """The pipeline serving a project's request (nothing loaded unless `load`).

        `auto` or `trained` with an active trained detector: that detector, with the zero-shot pipeline for config
        labels it does not know or leaves to it (`Version.zero_shot_labels`); `trained` without one:
        `ModelUnavailable`. `auto` or `lime` with an active project classifier: LIME over it (`auto`: unless it fails
        to load). Otherwise `pipeline(params.pipeline)`."""
        name = params.pipeline or self.default
        detector = self.registry.active(project_id, DETECTOR) if project_id is not None else None
        if name in ("auto", "trained") and detector is not None:
            trained = self._trained(detector, ontology, params, load)
            return _loaded(trained, ontology) if load else trained
        if name == "trained":
            raise ModelUnavailable(f"project {project_id} has no trained detector yet: annotate boxes and start "
                                   "training (Label Studio: Model → Start training), or use another pipeline")
        classifier = self.registry.active(project_id, CLASSIFIER) if project_id is not None else None
        if classifier is not None and name in ("auto", "lime"):
            lime = self._versions.get(classifier, lambda: LimeBoxesPipeline(self.models.classifier_at(
                CLASSIFIER, classifier.path, classifier.model_version)))
            if name == "lime":
                return _loaded(lime, ontology) if load else lime
            if _loads(lime, ontology) if load else all(m.available() for m in lime.required_models()):
                return lime
            log.warning("project %s: its classifier %s does not load; auto serves another pipeline", project_id,
                        classifier.model_version)  # `auto` hands over, as for the zero-shot pipelines
        return self.pipeline(params.pipeline, load, ontology)

    def _trained(self, version: Version, ontology: Ontology, params: PredictParams, load: bool) -> Pipeline:
        device = self.models.device
        model = self._versions.get(version, lambda: LazyModel(DETECTOR, version.model_version,
                                                              lambda: TrainedDetector(version.path, device)))
        classes = tuple(version.metrics.get("classes", ()))
        unknown, chosen = unknown_labels(ontology, classes), version.zero_shot_labels
        fallback = self.zero_shot(params, load, ontology) if unknown or set(chosen) & set(ontology.labels) else None
        if unknown and fallback is None:
            log.warning("no zero-shot pipeline for labels %s", unknown)
        # labels left to a zero-shot pipeline that cannot predict them now (another pick, changed coverage): the
        # detector keeps them, so no label is served by nobody
        covered = set(fallback.coverage(ontology, params).predicted) if fallback is not None else set()
        chosen = tuple(label for label in chosen if label in covered)
        # the zero-shot pipeline is asked only for labels it can predict (one it cannot is served by nobody yet:
        # the coverage says the detector was not trained on it)
        missing = tuple(label for label in ontology.labels
                        if label in covered and (label in unknown or label in chosen))
        return TrainedDetectorPipeline(model, version.model_version, self.models.sam, fallback, missing, classes,
                                       chosen, version.source_evidence(), version.metrics.get("thresholds"),
                                       self.memory)

    def zero_shot(self, params: PredictParams, load: bool = False, ontology: Ontology | None = None
                  ) -> Pipeline | None:
        """The zero-shot pipeline a project's detector stands beside (the project's `pipeline` when it names one of
        `AUTO_ORDER`, else `auto`'s pick; with `load`, its models for `ontology` loaded); None when none can run."""
        try:
            return self.pipeline(params.pipeline if params.pipeline in AUTO_ORDER else "auto", load, ontology)
        except ModelUnavailable as exc:
            (log.warning if load else log.info)("no zero-shot pipeline: %s", exc)
            return None

    def interactive(self, context: dict, cache_key: str) -> InteractivePipeline:
        """The smart-tool pipeline for one request (SAM must load: `ModelUnavailable` otherwise)."""
        self.models.sam.get()
        return InteractivePipeline(self.models.sam, context, cache_key)

    def run(self, pipeline: Pipeline, images: list[np.ndarray], ontology: Ontology, params: PredictParams,
            priority: int = PREDICT) -> list[Detections]:
        """One `Detections` per image from `pipeline` (resolved once by the caller; the device held for `forward`
        only; a zero-shot pipeline's regions of images it answered before come from `memory`). A model that fails to
        load raises `ModelUnavailable`: nothing hands over here."""
        if pipeline.name in AUTO_ORDER and pipeline is self.pipelines.get(pipeline.name):  # not a project's own
            pipeline = RememberedPipeline(pipeline, self.memory)
        return run_pipeline(pipeline, images, ontology, params, self.gate, priority)

    def active_name(self) -> str | None:
        """What `PIPELINE` resolves to now without waiting on the network (probes answer from their last result,
        nothing is loaded); None if nothing can run."""
        try:
            with hub_probe_nonblocking():
                return self.pipeline().name
        except ModelUnavailable:
            return None


def _loaded(pipeline: Pipeline, ontology: Ontology | None) -> Pipeline:
    """`pipeline` after loading its models for `ontology` (`ModelUnavailable` when one fails)."""
    pipeline.load(ontology)
    return pipeline


def _loads(pipeline: Pipeline, ontology: Ontology | None) -> bool:
    """Whether `pipeline`'s models for `ontology` load (a failure stays visible in /health)."""
    try:
        pipeline.load(ontology)
    except ModelUnavailable:
        return False
    return True
