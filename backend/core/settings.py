"""The one typed settings object, read from the environment once at start-up.

Every environment variable the service reads is a field here (one name per value).
Nothing else in the package reads `os.environ`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Mapping

from backend.core.described import described
from backend.core.layout import ModelDir

DEVICES = ("auto", "cpu", "cuda")
WEBHOOK_SECRET_HEADER = "X-Webhook-Secret"  # what /webhook checks against the webhook secret


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected a boolean, got {raw!r}")


def _hosts(raw: str) -> tuple[str, ...]:
    return tuple(h.strip().lower() for h in raw.split(",") if h.strip())


@dataclass(frozen=True)
class Settings:
    """Service configuration. Field name upper-cased is the environment variable; each is described once, in its
    `described` metadata (the README's table is generated from it). (`PIPELINE` is checked against the pipeline
    catalog, `backend.pipelines.catalog`, when the process builds its pipelines.)"""

    label_studio_url: str = described("", shown="(from `/setup`)", doc="Label Studio base URL the backend downloads "
        "images from, e.g. `http://localhost:8080`")
    label_studio_api_key: str = described("", shown="(from `/setup`)", doc="legacy token (`Token …`) or personal "
        "access token (exchanged for a `Bearer` token)")
    basic_auth_user: str = described("", doc="require HTTP basic auth on Label Studio → backend calls (set the same "
        "in the model connection)")
    basic_auth_pass: str = described("", doc="the password that goes with `BASIC_AUTH_USER` (both set, or neither)")
    model_dir: Path = described(Path("./models"), shown="`./models`", doc="model store: SQLite state, image cache, "
        "ONNX exports, local model directories (layout: `backend/core/layout.py`)")
    device: str = described("auto", doc="`auto` (CUDA when available), `cpu` or `cuda`")
    port: int = described(9090, doc="HTTP port (`make serve`)")
    workers: int = described(1, doc="gunicorn worker processes (each holds one copy of the models)")
    threads: int = described(4, doc="threads per worker (webhooks and health checks are answered while a prediction "
        "runs); raise it with `PREDICT_CONCURRENCY` to queue more prediction requests")
    pipeline: str = described("auto", doc="`auto`, `sam3`, `grounded`, `lime`, `trained`")
    detector_model: str = described("IDEA-Research/grounding-dino-tiny", doc="Grounding DINO: hub id (from the HF "
        "cache or the hub) or a local `save_pretrained` directory")
    sam_model: str = described("facebook/sam-vit-base", doc="SAM: hub id or local `save_pretrained` directory")
    sam3_model: str = described("facebook/sam3", doc="SAM 3 (`sam3` pipeline): hub id (gated: accept the licence on "
        "the hub) or local `save_pretrained` directory")
    video_tracker_model: str = described("facebook/sam2.1-hiera-tiny", doc="SAM 2 video (or EdgeTAM video) "
        "checkpoint that carries annotators' video boxes through the clip: hub id or local directory")
    classifier_model: str = described("efficientnet-lite0", doc="`efficientnet-lite0`, `torchvision:<arch>` (weights "
        "from the torch hub cache), or a directory with `classifier.pt`")
    allowed_image_hosts: tuple[str, ...] = described((), doc="extra hosts (comma separated, `host` or `host:port`) "
        "images may be fetched from besides Label Studio")
    max_image_bytes: int = described(50 * 1024 * 1024, doc="download size cap per image")
    max_image_pixels: int = described(80_000_000, doc="pixel cap per image, checked before decoding; also the pixels "
        "decoded at once per worker (memory bound ≈ 4 bytes × this)")
    max_video_bytes: int = described(2 * 1024**3, doc="size cap of a video task's file (streamed to disk under "
        "`MODEL_DIR/cache/videos`, removed after use)")
    video_download_timeout_s: float = described(600.0, doc="total time one video download may take")
    working_image_side: int = described(2048, doc="images are scaled right after decoding so their longer side is at "
        "most this (JPEGs decode at reduced scale); boxes are mapped back to the original pixels, brush masks scaled "
        "up per region")
    image_cache_mb: int = described(512, doc="on-disk image cache bound (`0` disables)")
    download_workers: int = described(8, doc="parallel image downloads per worker")
    download_timeout_s: float = described(20.0, doc="total time one image download may take (redirects included); "
        "also the timeout of API calls to Label Studio")
    predict_concurrency: int = described(2, doc="`/predict` requests in flight per worker; more get 503 with "
        "`Retry-After` (must be below `THREADS`, so `/health` and webhooks always find a thread)")
    predict_deadline_s: float = described(90.0, doc="a `/predict` request is also refused while the admitted work "
        "(measured seconds per image × images) would take longer than this (Label Studio gives up at 100 s)")
    predict_part_tasks: int = described(64, doc="tasks per part of a background predict job (the unit RQ workers "
        "take in parallel)")
    calibration_refresh_s: float = described(3600.0, doc="a project's review-score calibration is refitted from its "
        "reviewed tasks by the next predict job once older than this, or sooner once the project's annotated tasks have "
        "doubled since the last fit (and number at least 20)")
    preload_models: bool = described(True, doc="load and warm up the active pipeline in the background at start")
    embedding_cache_size: int = described(32, doc="SAM image embeddings kept for interactive clicks (per worker)")
    region_memory_mb: int = described(256, doc="MiB of zero-shot regions kept per process, by image, label config and "
        "the parameters that can change regions (not the review score, routing or video ones): a project's "
        "pre-labels, the held-out comparison of each new version and the re-prediction of a version that leaves "
        "labels to the zero-shot pipeline reuse them instead of running it again; `0`: none kept")
    run_jobs: bool = described(True, doc="run background jobs (training, pre-annotation) in this process, or hand "
        "them to Redis with `REDIS_URL`")
    train_yield_s: float = described(600.0, doc="on a CPU, a training pauses between its steps while a predict job of "
        "its project runs (a new version's re-prediction, pre-labels of new tasks) so the pre-labels reach annotators "
        "first, at most this many seconds per training (its time budget does not count them); `0`: the cores are "
        "shared (GPUs interleave: never pauses)")
    job_threads: int = described(2, doc="threads of the in-process runner for predict and review jobs (training has "
        "one thread of its own, so they never wait behind it)")
    versions_keep: int = described(3, doc="trained versions kept per project and kind besides the active one (older "
        "ones are deleted after each training)")
    label_studio_outage_s: float = described(300.0, doc="how long a background job waits for an unreachable Label "
        "Studio (backoff 1 → 30 s) before it stops")
    webhook_secret: str = described("", doc="when set, `/webhook` accepts requests with the header "
        "`X-Webhook-Secret: <secret>` (without basic auth it requires it); the backend adds it to the project's "
        "Label Studio webhook after Connect")
    redis_url: str = described("", doc="e.g. `redis://redis:6379/0`: training jobs go to the RQ queue "
        "`autolabel-train`, predict and review jobs and the parts of predict jobs to `autolabel-predict`, run by "
        "`python -m backend.jobs.rq_queue` workers (install the `queue` extra)")
    log_level: str = described("INFO", doc="Python log level")

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"DEVICE must be one of {DEVICES}, got {self.device!r}")
        if bool(self.basic_auth_user) != bool(self.basic_auth_pass):
            raise ValueError("BASIC_AUTH_USER and BASIC_AUTH_PASS must be set together")
        for name in ("workers", "threads", "max_image_bytes", "max_image_pixels", "download_workers",
                     "predict_concurrency", "working_image_side", "predict_part_tasks", "job_threads",
                     "versions_keep"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.upper()} must be >= 1")
        if self.predict_concurrency >= self.threads:
            raise ValueError(f"PREDICT_CONCURRENCY ({self.predict_concurrency}) must be below THREADS ({self.threads}): "
                             "the other threads answer /health, webhooks and the 503s of requests beyond it")
        for name in ("download_timeout_s", "predict_deadline_s", "video_download_timeout_s", "calibration_refresh_s",
                     "label_studio_outage_s"):
            if not 0 < getattr(self, name) < float("inf"):
                raise ValueError(f"{name.upper()} must be a positive number of seconds")
        if not 0 <= self.train_yield_s < float("inf"):
            raise ValueError("TRAIN_YIELD_S must be a number of seconds >= 0")
        object.__setattr__(self, "label_studio_url", self.label_studio_url.rstrip("/"))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Build from `env` (default `os.environ`); unknown variables are ignored, bad values raise."""
        env = os.environ if env is None else env
        kwargs = {}
        for f in fields(cls):
            raw = env.get(f.name.upper())
            if raw is None:
                continue
            default = f.default
            try:
                if isinstance(default, bool):
                    kwargs[f.name] = _bool(raw)
                elif isinstance(default, int):
                    kwargs[f.name] = int(raw)
                elif isinstance(default, float):
                    kwargs[f.name] = float(raw)
                elif isinstance(default, Path):
                    kwargs[f.name] = Path(raw)
                elif isinstance(default, tuple):
                    kwargs[f.name] = _hosts(raw)
                else:
                    kwargs[f.name] = raw.strip()
            except ValueError as exc:
                raise ValueError(f"{f.name.upper()}: {exc}") from None
        return cls(**kwargs)

    @property
    def layout(self) -> ModelDir:
        """Where everything lives under `model_dir`."""
        return ModelDir(Path(self.model_dir))

    @property
    def basic_auth_enabled(self) -> bool:
        return bool(self.basic_auth_user)

    def resolve_device(self) -> str:
        """`auto` → `cuda` when a GPU is visible, else `cpu`."""
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
