"""What background work needs, built the same way by the service process and by RQ workers (never importing
`backend.service`): settings, the state file (projects, events, jobs), the model registry, the Label Studio
connection and image fetcher, the process's models, device gate and pipeline selector, and the scheduler that
enqueues jobs (to Redis when `REDIS_URL` is set).

`handlers()` gives the entry point of each job kind, for the in-process runner and RQ workers alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from backend.adapters.model_set import ModelSet
from backend.core.cancel import NEVER, StopFlag
from backend.core.device import BACKGROUND, DeviceGate
from backend.core.ontology import Ontology
from backend.core.files import check_writable_dir
from backend.core.params import ProjectParams
from backend.core.region_memory import RegionMemory
from backend.core.settings import Settings
from backend.jobs.calibration import load_calibration
from backend.jobs.parts import JobParts
from backend.jobs.prediction import merge_options, run_predict_job
from backend.jobs.queue import PREDICT_JOB, REVIEW_JOB, TRAIN_JOB, JobQueue
from backend.jobs.review import run_review_job
from backend.jobs.scheduler import Scheduler
from backend.jobs.training import run_training_job
from backend.jobs.yielding import TrainingYield, project_predicting
from backend.labelstudio.client import LabelStudioConnection
from backend.labelstudio.images import ImageFetcher, build_image_fetcher
from backend.labelstudio.status import LabelStudioStatus
from backend.pipelines.selection import PipelineSelector
from backend.predictions.clusters import load_clusters
from backend.predictions.priority import ReviewScorer
from backend.predictions.tasks import Predictor
from backend.training.comparison import ZeroShot
from backend.registry.versions import Registry
from backend.store.database import Database
from backend.store.events import EventLog
from backend.store.instance import webhook_secret
from backend.store.projects import ProjectStore
from backend.store.scores import ScoreLog



@dataclass
class JobContext:
    settings: Settings
    projects: ProjectStore
    events: EventLog
    jobs: JobQueue
    parts: JobParts
    registry: Registry
    connection: LabelStudioConnection
    images: ImageFetcher
    models: ModelSet
    gate: DeviceGate
    selector: PipelineSelector
    scheduler: Scheduler
    scores: ScoreLog
    label_studio: LabelStudioStatus
    webhook_secret: str = ""  # what /webhook accepts in X-Webhook-Secret (`backend.store.instance.webhook_secret`)

    @classmethod
    def build(cls, settings: Settings) -> "JobContext":
        """Everything from the settings (models load lazily, later); removes staging left by a crash."""
        check_writable_dir(settings.model_dir, "MODEL_DIR")
        device = settings.resolve_device()
        db = Database(settings.layout.state_file)
        registry = Registry(settings.model_dir)
        registry.clean_staging()
        connection = LabelStudioConnection(settings.label_studio_url, settings.label_studio_api_key,
                                           settings.download_timeout_s)
        models = ModelSet.from_settings(settings, device)
        gate = DeviceGate(device)
        jobs = JobQueue(db)
        projects = ProjectStore(db)
        scheduler = Scheduler(jobs, settings.redis_url,
                              lambda project_id: ProjectParams.from_extra(_extra(projects, project_id)))
        return cls(settings, projects, EventLog(db), jobs, JobParts(db), registry, connection,
                   build_image_fetcher(settings, connection), models, gate,
                   PipelineSelector(settings.pipeline, models, registry, gate,
                                    RegionMemory(settings.region_memory_mb * 2**20)), scheduler, ScoreLog(db),
                   LabelStudioStatus(connection), webhook_secret(settings))

    @property
    def device(self) -> str:
        return self.models.device

    def project_params(self, project_id: int | None) -> ProjectParams:
        """The project's parameters as last set up (defaults for unknown projects)."""
        return ProjectParams.from_extra(_extra(self.projects, project_id))

    def handlers(self) -> dict:
        """Job kind → handler(job, stop) for `JobRunner`."""
        return {TRAIN_JOB: self.run_training, PREDICT_JOB: lambda job, stop=NEVER: run_predict_job(self, job, stop),
                REVIEW_JOB: lambda job, stop=NEVER: run_review_job(self, job, stop)}

    def run_job(self, job: dict, stop: StopFlag = NEVER) -> dict:
        """A claimed job's work (the same code for the in-process runner and RQ workers)."""
        handler = self.handlers().get(job["kind"])
        if handler is None:
            raise ValueError(f"no handler for job kind {job['kind']!r}")
        return handler(job, stop)

    def run_training(self, job: dict, stop: StopFlag = NEVER) -> dict:
        """A `train` job; a version that became active re-predicts the project's unlabelled tasks. On a CPU the
        detector's training yields to the project's running predict job (`backend.jobs.yielding`)."""
        result = run_training_job(job, self.projects, self.registry, self.connection, self.images, self.device, stop,
                                  self.settings.layout.video_cache, self.settings.versions_keep,
                                  self.zero_shot,
                                  TrainingYield(self.device, self.settings.train_yield_s,
                                                project_predicting(self.jobs.running, int(job["project_id"]),
                                                                   PREDICT_JOB), stop))
        if any(isinstance(r, dict) and r.get("activated") for r in result.values()):
            self.request_predictions(int(job["project_id"]), "VERSION_ACTIVATED")
        return result

    def zero_shot(self, ontology: Ontology, params: ProjectParams) -> ZeroShot | None:
        """The zero-shot pipeline a project's new detector version is compared with, label by label (regions of
        images it answered before, for the project's pre-labels or an earlier training, come from the selector's
        `RegionMemory`); None when none can run."""
        pipeline = self.selector.zero_shot(params.predict, True, ontology)  # loaded: its results are credited to it
        if pipeline is None:
            return None
        covers = set(pipeline.coverage(ontology, params.predict).predicted)
        return ZeroShot(pipeline.model_version, covers, lambda images: self.selector.run(
            pipeline, images, ontology, params.predict, BACKGROUND))

    def request_predictions(self, project_id: int, trigger: str, tasks: list[int] | None = None,
                            overwrite: bool = False, explicit: bool = False) -> tuple[int, bool] | None:
        """Enqueue (coalesced) a predict job; automatic triggers only for projects with `auto_predict` (the
        default). Returns (job id, created), or None when not enqueued."""
        if not explicit and not self.project_params(project_id).predict.auto_predict:
            return None
        return self.repeat_predictions(project_id, trigger, {"tasks": tasks, "overwrite": overwrite})

    def repeat_predictions(self, project_id: int, trigger: str, options: dict) -> tuple[int, bool] | None:
        """Enqueue (coalesced by `merge_options`) a predict job with these options, whatever `auto_predict` says:
        {"tasks", "overwrite"}, or a superseded job's own (`listed` included); returns (job id, created)."""
        return self.scheduler.request(project_id, PREDICT_JOB, trigger, dict(options), merge_options)

    def request_review(self, project_id: int, trigger: str) -> tuple[int, bool]:
        """Enqueue (coalesced with the project's pending one) a `review` job; returns (job id, created)."""
        return self.scheduler.request(project_id, REVIEW_JOB, trigger)

    def review_scorer(self, project_id: int | None, params) -> ReviewScorer:
        """How the project's predictions are scored (its `review_score` mode)."""
        return ReviewScorer(params.review_score)

    def predictor(self, project_id: int | None, params, with_clusters: bool = False,
                  deadline_s: float | None = None) -> Predictor:
        """Tasks → predictions for the project (the code path `/predict` and predict jobs share), scores calibrated
        with the project's stored calibration (`backend.jobs.calibration`) when it has one; `with_clusters`: each
        prediction gets its image cluster when the project has clusters (predict jobs: Label Studio keeps
        `cluster` only from them) and each image its embedding (recorded for the project's count model: an image
        project's jobs have clusters; `/predict` embeds only for a calibration that holds one); `deadline_s`: how
        long carrying video boxes may take (`/predict`)."""
        clusters = load_clusters(self.clusters_path(project_id)) if with_clusters and project_id is not None else None
        calibration = load_calibration(self.settings.model_dir, project_id, params.review_score)[0]
        embed = clusters is not None or (calibration is not None and calibration.count_model is not None)
        return Predictor(self.selector, self.images, self.review_scorer(project_id, params),
                         self.settings.layout.video_cache, calibration, clusters=clusters,
                         embed=self.models.embedder.get().embed if embed else None, deadline_s=deadline_s)

    def clusters_path(self, project_id: int):
        """`MODEL_DIR/projects/<id>/clusters.npz` (`backend.predictions.clusters`)."""
        return self.settings.layout.clusters(project_id)


def _extra(projects: ProjectStore, project_id: int | None) -> dict:
    stored = projects.get(project_id)
    return stored.extra_params if stored else {}
