"""Start a real Label Studio and a real backend (gunicorn, as `make serve` runs it) on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "0123456789abcdef0123456789abcdef01234567"
EMAIL, PASSWORD = "admin@example.com", "admin-password-1"  # the Label Studio user the tests log in as


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not come up in {timeout_s} s:\n{log.read_text()[-4000:]}")


def label_studio_binary() -> str | None:
    candidate = os.environ.get("LABEL_STUDIO_BIN") or str(ROOT / ".venv-ls" / "bin" / "label-studio")
    return candidate if Path(candidate).exists() else shutil.which("label-studio")


class _Server:
    """A child process serving HTTP; `stop()` terminates it (kills it after 20 s)."""

    process: subprocess.Popen

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()


class LabelStudioServer(_Server):
    """A real Label Studio with its own HOME, data dir and local-files root under `workdir`."""

    def __init__(self, binary: str, workdir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = TOKEN
        self.files_root = workdir / "files"
        self.files_root.mkdir(parents=True)
        home = workdir / "home"
        env = {
            **os.environ,
            "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "XDG_DATA_HOME": str(home / ".local"),
            "XDG_CACHE_HOME": str(home / ".cache"), "LABEL_STUDIO_BASE_DATA_DIR": str(workdir / "data"),
            "LABEL_STUDIO_USERNAME": EMAIL, "LABEL_STUDIO_PASSWORD": PASSWORD,
            "LABEL_STUDIO_USER_TOKEN": TOKEN, "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "ML_BLOCK_LOCAL_IP": "false", "SSRF_PROTECTION_ENABLED": "false", "LATEST_VERSION_CHECK": "false",
            "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(self.files_root),
            "COLLECT_ANALYTICS": "false", "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "",
        }
        self.log = workdir / "label-studio.log"
        self._start = lambda: subprocess.Popen(
            [binary, "start", "--no-browser", "--internal-host", "127.0.0.1", "-p", str(self.port),
             "--username", EMAIL, "--password", PASSWORD, "--user-token", TOKEN,
             "--enable-legacy-api-token"],
            env=env, stdout=self.log.open("a"), stderr=subprocess.STDOUT, cwd=workdir)
        self.process = self._start()
        wait_for(f"{self.url}/health", self.process, self.log, 300)

    def restart(self) -> None:
        """Start it again (same port, data and token) after `stop()`: an outage that ends."""
        self.process = self._start()
        wait_for(f"{self.url}/health", self.process, self.log, 300)



class BackendServer(_Server):
    """This backend under gunicorn with the `make serve` flags (or the gunicorn config file `config`), talking to
    `label_studio_url`."""

    def __init__(self, workdir: Path, label_studio_url: str, token: str, port: int | None = None,
                 config: Path | None = None, **env_overrides: str):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.model_dir = workdir / "models"
        env = {**os.environ, "LABEL_STUDIO_URL": label_studio_url, "LABEL_STUDIO_API_KEY": token,
               "MODEL_DIR": str(self.model_dir), "DEVICE": "cpu", "PRELOAD_MODELS": "true", **env_overrides}
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "backend.log"
        gunicorn = Path(sys.executable).parent / "gunicorn"
        self.process = subprocess.Popen(
            [str(gunicorn), "-c", str(config) if config else "python:backend.service.gunicorn_conf",
             "backend.service.app:create_app()",
             "--bind", f"127.0.0.1:{self.port}"],
            env=env, cwd=ROOT, stdout=self.log.open("a"), stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(f"{self.url}/health", self.process, self.log, 120)

    def kill(self) -> None:
        """SIGKILL the gunicorn master and its workers at once (a crash: no shutdown code runs)."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

