"""Secrets this service keeps for itself under `MODEL_DIR` (shared by its worker processes and RQ workers)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from backend.core.layout import ModelDir


def generated_secret(model_dir: Path, name: str = "webhook_secret") -> str:
    """A random secret created once (`MODEL_DIR/<name>`, mode 0600; the first process to create it wins)."""
    path = ModelDir(Path(model_dir)).secret(name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def webhook_secret(settings) -> str:
    """The secret `/webhook` accepts in `X-Webhook-Secret` (and the backend puts on Label Studio's project webhook):
    `WEBHOOK_SECRET`, else, with basic auth on, one generated for this MODEL_DIR (so the basic-auth credentials never
    have to be stored in Label Studio's webhook), else "" (no secret)."""
    if settings.webhook_secret:
        return settings.webhook_secret
    return generated_secret(settings.model_dir) if settings.basic_auth_enabled else ""
