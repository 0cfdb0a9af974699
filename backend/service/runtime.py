"""Everything one worker process holds, wired once by `create_app`: the job context (state file, registry, Label
Studio connection and its status, image fetcher, models, device gate, pipeline selector, scheduler;
`backend.jobs.context`) plus what only the HTTP side needs: metrics, admission control, the `/setup` follow-ups and
the in-process job runner."""

from __future__ import annotations

import logging

import numpy as np

from backend import __version__
from backend.core.params import PredictParams
from backend.core.settings import Settings
from backend.jobs.context import JobContext
from backend.jobs.prediction import job_progress
from backend.jobs.project_setup import after_setup
from backend.jobs.runner import JobRunner, default_lanes
from backend.labelstudio.config import parse_label_config
from backend.registry.versions import DETECTOR
from backend.service.admission import Admission, interactive_slots
from backend.service.followups import SetupFollowUps
from backend.service.metrics import Metrics
from backend.store.health import StorageProbe
from backend.jobs.queue import PREDICT_JOB, TRAIN_JOB

HEALTH_PROJECTS = 20  # projects /health describes (the most recently set up)

log = logging.getLogger(__name__)
WARM_UP_CONFIG = ('<View><Image name="i" value="$i"/><RectangleLabels name="r" toName="i"><Label value="cat"/>'
                  '</RectangleLabels></View>')


class Runtime:
    """The HTTP side of one worker process. What routes share with background jobs is `context` (a `JobContext`:
    `runtime.context.jobs`, `runtime.context.selector`, ...); nothing is forwarded."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.context = JobContext.build(settings)
        self.metrics = Metrics()
        self.admission = Admission(settings.predict_concurrency, settings.predict_deadline_s)
        self.storage = StorageProbe(settings.model_dir, self.context.projects.db)
        self.interactive_admission = Admission(interactive_slots(settings.threads, settings.predict_concurrency),
                                               settings.predict_deadline_s, "smart-tool requests",
                                               "click again in a moment (raise THREADS for more at once)")
        self.followups = SetupFollowUps(lambda project_id: after_setup(self.context, project_id))
        self.runner: JobRunner | None = None

    def start_job_runner(self) -> JobRunner | None:
        """An in-process runner thread, or (with `REDIS_URL`) every pending job handed to the RQ workers. Jobs
        left `running` by dead processes go back to pending either way."""
        if self.context.scheduler.dispatcher is not None:
            self.context.scheduler.start_handoff()  # pending jobs handed to Redis in the background, never blocking
            return None
        self.runner = JobRunner(self.context.jobs, self.context.handlers(),
                                lanes=default_lanes(self.settings.job_threads)).start()
        return self.runner

    def stop(self) -> None:
        """Stop the running job between two steps (it goes back to pending) and end the runner thread."""
        if self.runner is not None:
            self.runner.stop()

    def health(self, details: bool = True) -> dict:
        """What `/health` answers; never waits on the network or loads a model (Label Studio gives it 1 s). `status`
        is "DEGRADED" while the state under MODEL_DIR cannot be written (`storage` says why). Without `details`
        (basic auth on and none given) the per-project part and the text of Label Studio's answers are left out."""
        storage = self.storage.current()
        label_studio = self.context.label_studio.current().as_dict()
        if not details:
            return {"status": "UP" if storage["state"] == "ok" else "DEGRADED", "storage": {"state": storage["state"]},
                    "label_studio": {"state": label_studio["state"]}, "version": __version__,
                    "model_class": "backend"}
        return {
            "status": "UP" if storage["state"] == "ok" else "DEGRADED", "storage": storage,
            "model_class": "backend", "version": __version__, "device": self.context.device,
            "pipeline": self.context.selector.active_name(), "pipelines": sorted(self.context.selector.pipelines),
            "label_studio": label_studio,
            "models": self.context.models.status(), "zero_shot_memory": self.context.selector.memory.status(),
            "jobs": self.context.jobs.summary(),
            "job_runner": self.context.scheduler.runner_kind if self.settings.run_jobs else "off",
            "job_threads": {"training": 1, "predict and review": self.settings.job_threads},
            "predict": self.admission.status(), "interactive": self.interactive_admission.status(),
            "running": [{"job": job["id"], "kind": job["kind"], "project": job["project_id"],
                         **({"progress": job_progress(self.context, job)} if job["kind"] == PREDICT_JOB else {})}
                        for job in self.context.jobs.running()],
            "projects": {str(p.project_id): self.project_health(p)
                         for p in self.context.projects.recent(HEALTH_PROJECTS)},
        }

    def project_health(self, project) -> dict:
        """A set-up project in `/health`: which labels cannot be pre-labelled (and the fix), the Label Studio
        settings this service manages, and how its last predict and training jobs ended."""
        out = {"coverage": project.coverage or {"state": "not checked yet"},
               "label_studio_settings": project.managed}
        detector = self.context.registry.active(project.project_id, DETECTOR)
        if detector is not None and detector.metrics.get("sources"):  # per label: the detector or zero-shot, and why
            evidence = detector.source_evidence()
            out["label_sources"] = {"version": detector.model_version,
                                    "labels": {label: {"source": source, "why": evidence.get(label)}
                                               for label, source in detector.metrics["sources"].items()}}
        for kind in (PREDICT_JOB, TRAIN_JOB):
            (job,) = self.context.jobs.jobs(project.project_id, limit=1, kind=kind) or (None,)
            if job is not None:
                out[f"last_{kind}"] = {"job": job["id"], "status": job["status"], "message": job["message"]}
        return out

    def warm_up(self) -> None:
        """Load the active pipeline's models and run one tiny prediction (start-up, background)."""
        try:
            pipeline = self.context.selector.pipeline(load=True)
            image = np.zeros((64, 64, 3), np.uint8)
            self.context.selector.run(pipeline, [image], parse_label_config(WARM_UP_CONFIG),
                                      PredictParams(num_samples=16))
            log.info("warm-up done: pipeline %s ready", pipeline.name)
        except Exception as exc:  # warm-up failures are reported by /health, never fatal
            log.warning("warm-up failed: %s", exc)
