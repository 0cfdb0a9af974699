"""The deployment files: docker-compose.yml wiring and the example label config."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from backend.core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_compose_wires_label_studio_backend_and_gpu():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"label-studio", "backend"} <= set(services)
    backend = services["backend"]
    env = backend["environment"]
    assert env["LABEL_STUDIO_URL"] == "http://label-studio:8080" and env["MODEL_DIR"] == "/models"
    assert any(str(v).endswith(":/models") for v in backend["volumes"])
    devices = backend["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    # every variable the compose file sets for the backend is a real setting
    known = {f.upper() for f in Settings.__dataclass_fields__} | {"HF_HOME"}
    assert set(env) <= known, set(env) - known
    # scale-out: Redis, and an RQ worker with the same settings, model store and a GPU
    worker = services["worker"]
    assert "redis" in services and env["REDIS_URL"].startswith("redis://redis:")
    assert worker["environment"] == env and worker["volumes"] == backend["volumes"]
    assert worker["command"][2:] == ["backend.jobs.rq_queue", "--queues", "predict,train"]
    assert worker["deploy"] == backend["deploy"]
    # pre-labelling and review have a worker of their own: they never wait for a running training
    predict_worker = services["predict-worker"]
    assert predict_worker["command"][2:] == ["backend.jobs.rq_queue", "--queues", "predict"]
    assert predict_worker["environment"] == env and predict_worker["volumes"] == backend["volumes"]


def compose_command() -> list[str] | None:
    """A compose client that works here: `docker compose` (the plugin) or `docker-compose` (v1), else None.
    `docker` alone is not enough: without the plugin, `docker compose -f ...` fails on the flag."""
    candidates = [["docker", "compose"], ["docker-compose"]]
    for command in candidates:
        if shutil.which(command[0]) is None:
            continue
        probe = subprocess.run([*command, "version"], capture_output=True, text=True)
        if probe.returncode == 0 and "compose" in (probe.stdout + probe.stderr).lower():
            return command
    return None


def test_compose_config_is_accepted():
    command = compose_command()
    if command is None:
        pytest.skip("no working compose client here (docker without the compose plugin, no docker-compose)")
    result = subprocess.run([*command, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
