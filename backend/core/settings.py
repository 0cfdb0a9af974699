"""The one typed settings object, read from the environment once at start-up.

Every environment variable the service reads is a field here (one name per value).
Nothing else in the package reads `os.environ`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Mapping

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
    """Service configuration. Field name upper-cased is the environment variable. (`PIPELINE` is checked against
    the pipeline registry, `backend.pipelines.registry`, when the process builds its pipelines.)"""

    label_studio_url: str = ""
    label_studio_api_key: str = ""
    basic_auth_user: str = ""
    basic_auth_pass: str = ""
    model_dir: Path = Path("./models")
    device: str = "auto"
    port: int = 9090
    workers: int = 1
    threads: int = 4
    pipeline: str = "auto"
    detector_model: str = "IDEA-Research/grounding-dino-tiny"
    sam_model: str = "facebook/sam-vit-base"
    sam3_model: str = "facebook/sam3"
    video_tracker_model: str = "facebook/sam2.1-hiera-tiny"
    classifier_model: str = "efficientnet-lite0"
    allowed_image_hosts: tuple[str, ...] = ()
    max_image_bytes: int = 50 * 1024 * 1024
    max_image_pixels: int = 80_000_000
    max_video_bytes: int = 2 * 1024**3
    video_download_timeout_s: float = 600.0
    working_image_side: int = 2048
    image_cache_mb: int = 512
    download_workers: int = 8
    download_timeout_s: float = 20.0
    predict_concurrency: int = 2
    predict_deadline_s: float = 90.0
    predict_part_tasks: int = 64
    calibration_refresh_s: float = 3600.0
    preload_models: bool = True
    embedding_cache_size: int = 32
    run_jobs: bool = True
    job_threads: int = 2
    versions_keep: int = 3
    label_studio_outage_s: float = 300.0
    webhook_secret: str = ""
    redis_url: str = ""
    log_level: str = "INFO"

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
