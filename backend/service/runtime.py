"""Everything one worker process holds: settings, Label Studio connection, image fetcher, models,
pipelines, state store and metrics. Built once per process by `create_app`; models load lazily."""

from __future__ import annotations

import logging
import threading

import numpy as np

from backend.adapters.base import LazyModel
from backend.adapters.classifier import build_classifier
from backend.adapters.grounding_dino import GroundingDinoDetector
from backend.adapters.hub import hub_probe_nonblocking, source_available
from backend.adapters.sam import SamSegmenter
from backend.adapters.trained_detector import TrainedDetector
from backend.core.cancel import NEVER, StopFlag
from backend.core.errors import BadRequest, ModelUnavailable
from backend.core.ontology import Ontology
from backend.core.params import PredictParams
from backend.core.settings import Settings
from backend.jobs.queue import JobQueue, JobRunner
from backend.jobs.rq_queue import RQDispatcher
from backend.jobs.store import StateStore
from backend.jobs.training import CLASSIFIER, DETECTOR, run_training_job
from backend.labelstudio.client import LabelStudioConnection
from backend.labelstudio.config import parse_label_config
from backend.labelstudio.images import build_image_fetcher
from backend.pipelines.grounded import GroundedPipeline
from backend.pipelines.lime_boxes import LimeBoxesPipeline
from backend.pipelines.trained import TrainedDetectorPipeline, unknown_labels
from backend.registry.versions import Registry, Version
from backend.service.admission import Admission
from backend.service.metrics import Metrics

log = logging.getLogger(__name__)

AUTO_ORDER = ("grounded", "lime")  # PIPELINE=auto: the first whose models load


class Runtime:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.device = settings.resolve_device()
        self.metrics = Metrics()
        self.admission = Admission(settings.predict_concurrency, settings.predict_deadline_s)
        self.store = StateStore(settings.model_dir / "backend.sqlite")
        self.connection = LabelStudioConnection(settings.label_studio_url, settings.label_studio_api_key,
                                                settings.download_timeout_s)
        self.images = build_image_fetcher(settings, self.connection)
        self.models = self._build_models()
        self.pipelines = {
            "grounded": GroundedPipeline(self.models["detector"], self.models["sam"], self.models["classifier"]),
            "lime": LimeBoxesPipeline(self.models["classifier"]),
        }
        self._gpu_lock = threading.Lock()  # one pipeline run at a time per process: models share the device
        self.registry = Registry(settings.model_dir)
        self.registry.clean_staging()
        self.jobs = JobQueue(self.store)
        self.dispatcher = RQDispatcher(settings.redis_url) if settings.redis_url else None
        self._per_version_cache: dict[tuple[int, str, str], object] = {}
        self._project_lock = threading.Lock()

    def run_job(self, job: dict, stop: StopFlag = NEVER) -> dict:
        """A claimed job's work (the same code for the in-process runner and RQ workers)."""
        if job["kind"] != "train":
            raise ValueError(f"no handler for job kind {job['kind']!r}")
        return run_training_job(job, self.store, self.registry, self.connection, self.images, self.device, stop)

    def request_training(self, project_id: int, trigger: str) -> tuple[int, bool]:
        """(job id, created): a pending `train` job for the project (coalesced); new jobs go to Redis when
        `REDIS_URL` is set, else the in-process runner picks them up."""
        job_id, created = self.jobs.enqueue(project_id, "train", trigger)
        if created and self.dispatcher is not None:
            self._dispatch(job_id, project_id)
        return job_id, created

    def _dispatch(self, job_id: int, project_id: int) -> None:
        try:
            self.dispatcher.submit(job_id, self.project_params(project_id).train_time_budget_s)
        except Exception as exc:  # Redis down: the job stays pending; workers re-queue pending jobs at start
            log.error("job %s could not be handed to Redis (%s); it stays pending", job_id, exc)

    def start_job_runner(self) -> JobRunner | None:
        """Jobs left by dead processes go back to pending; then either an in-process runner thread, or
        (with `REDIS_URL`) every pending job is (re-)queued for the RQ workers."""
        if self.dispatcher is None:
            return JobRunner(self.jobs, {"train": self.run_job}).start()
        self.jobs.recover()
        for job in self.jobs.pending():
            self._dispatch(job["id"], job["project_id"])
        return None

    def _build_models(self) -> dict[str, LazyModel]:
        s, device = self.settings, self.device
        return {
            "detector": LazyModel("detector", s.detector_model, lambda: GroundingDinoDetector(s.detector_model, device),
                                  lambda: source_available(s.detector_model)),
            "sam": LazyModel("sam", s.sam_model, lambda: SamSegmenter(s.sam_model, device, s.embedding_cache_size),
                             lambda: source_available(s.sam_model)),
            "classifier": LazyModel("classifier", s.classifier_model,
                                    lambda: build_classifier(s.classifier_model, device, s.model_dir / "cache" / "onnx")),
        }

    # -- pipelines ---------------------------------------------------------------------------------

    def pipeline(self, requested: str = ""):
        """The pipeline for a request: `requested` (extra_params), else `PIPELINE`; `auto` picks the
        first of `AUTO_ORDER` whose models are loaded or look loadable (nothing is loaded here).
        Raises `BadRequest` / `ModelUnavailable`."""
        name = requested or self.settings.pipeline
        if name == "auto":
            for candidate in AUTO_ORDER:
                if all(m.available() for m in self.pipelines[candidate].required_models()):
                    return self.pipelines[candidate]
            raise ModelUnavailable(f"no pipeline can run: {self.model_status()}")
        if name not in self.pipelines:
            raise BadRequest(f"pipeline {name!r} is not available here; available: {sorted(self.pipelines)}")
        return self.pipelines[name]

    def pipeline_for(self, project_id: int | None, params: PredictParams, ontology: Ontology):
        """The pipeline serving a project's request.

        `auto` or `trained` with an active trained detector: that detector, with the zero-shot pipeline for
        config labels it does not know; `trained` without one: `ModelUnavailable`. `auto` or `lime` with an
        active project classifier: LIME over it. Otherwise `pipeline(params.pipeline)`."""
        name = params.pipeline or self.settings.pipeline
        if name in ("auto", "trained") and project_id is not None:
            detector = self.registry.active(project_id, DETECTOR)
            if detector is not None:
                return self._trained_pipeline(detector, ontology, params)
        if name == "trained":
            raise ModelUnavailable(f"project {project_id} has no trained detector yet: annotate boxes and start "
                                   "training (Label Studio: Model → Start training), or use another pipeline")
        classifier = self.registry.active(project_id, CLASSIFIER) if project_id is not None else None
        if classifier is not None and name in ("auto", "lime"):
            path, onnx_dir = str(classifier.path), self.settings.model_dir / "cache" / "onnx"
            return self._per_version(classifier, lambda: LimeBoxesPipeline(LazyModel(
                CLASSIFIER, classifier.label, lambda: build_classifier(path, self.device, onnx_dir))))
        return self.pipeline(params.pipeline)

    def _trained_pipeline(self, version: Version, ontology: Ontology, params: PredictParams):
        model = self._per_version(version, lambda: LazyModel(DETECTOR, version.label,
                                                             lambda: TrainedDetector(version.path, self.device)))
        missing = unknown_labels(ontology, version.metrics.get("classes", ()))
        fallback = None
        if missing:
            try:
                fallback = self.pipeline(params.pipeline if params.pipeline in AUTO_ORDER else "auto")
            except ModelUnavailable as exc:
                log.warning("no zero-shot fallback for labels %s: %s", missing, exc)
        return TrainedDetectorPipeline(model, version.label, self.models["sam"], fallback, missing)

    def _per_version(self, version: Version, factory):
        """`factory()` once per registry version and process (the models inside load lazily, once); a
        project's other versions of the same kind are dropped, so replaced models free their memory."""
        key = (version.project_id, version.kind, version.name)
        with self._project_lock:
            if key not in self._per_version_cache:
                for old in [k for k in self._per_version_cache if k[:2] == key[:2]]:
                    del self._per_version_cache[old]
                self._per_version_cache[key] = factory()
            return self._per_version_cache[key]

    def active_pipeline_name(self) -> str | None:
        """What `PIPELINE` resolves to now (never blocks: availability probes answer from their last result,
        nothing loaded); None if nothing can run."""
        try:
            with hub_probe_nonblocking():
                return self.pipeline().name
        except ModelUnavailable:
            return None

    def model_status(self) -> dict:
        return {name: model.status() for name, model in self.models.items()}

    def run_pipeline(self, pipeline, images, ontology, params):
        """`pipeline.predict` under the device lock; in auto mode a pipeline whose weights fail to load
        hands over to the next one (the failure stays visible in /health)."""
        with self._gpu_lock:
            try:
                return pipeline, pipeline.predict(images, ontology, params)
            except ModelUnavailable:
                if (params.pipeline or self.settings.pipeline) != "auto":
                    raise
            fallback = self.pipeline(params.pipeline)
            return fallback, fallback.predict(images, ontology, params)

    def run_exclusive(self, fn, *args):
        """Run `fn(*args)` holding the device lock (one model call at a time per process)."""
        with self._gpu_lock:
            return fn(*args)

    # -- projects ----------------------------------------------------------------------------------

    def project_params(self, project_id: int | None) -> PredictParams:
        stored = self.store.project(project_id) if project_id is not None else None
        return PredictParams().with_overrides(stored["extra_params"] if stored else None)

    def warm_up(self) -> None:
        """Load the active pipeline's models and run one tiny prediction (start-up, background)."""
        try:
            pipeline = self.pipeline()
            onto = parse_label_config('<View><Image name="i" value="$i"/><RectangleLabels name="r" toName="i">'
                                      '<Label value="cat"/></RectangleLabels></View>')
            image = np.zeros((64, 64, 3), np.uint8)
            used, _ = self.run_pipeline(pipeline, [image], onto, PredictParams(num_samples=16))
            log.info("warm-up done: pipeline %s ready", used.name)
        except Exception as exc:  # warm-up failures are reported by /health, never fatal
            log.warning("warm-up failed: %s", exc)
