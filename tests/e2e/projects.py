"""Label Studio projects for the background-prediction end-to-end tests: small real photos uploaded as tasks, the
backend connected as the project's model, and polling helpers."""

import io
import time

import numpy as np
import pytest
import requests
from label_studio_sdk.client import LabelStudio
from PIL import Image
from skimage import data

CONFIG = """<View><Image name="image" value="$image"/>
<RectangleLabels name="box" toName="image"><Label value="cat"/><Label value="cup"/></RectangleLabels></View>"""
FAST = {"num_samples": 8, "superpixels": 8}  # LIME at its cheapest: these tests are about the jobs


def photo_png(seed: int, size=(96, 64)) -> bytes:
    """A small real photo: a random crop of the cat or the coffee cup (skimage.data), `size` (width, height)."""
    rng = np.random.default_rng(seed)
    photo = (data.chelsea(), data.coffee())[seed % 2]
    h, w = photo.shape[:2]
    x, y = int(rng.integers(0, w // 4)), int(rng.integers(0, h // 4))
    crop = Image.fromarray(photo[y:y + 3 * h // 4, x:x + 3 * w // 4]).resize(size)
    buf = io.BytesIO()
    crop.save(buf, format="PNG")
    return buf.getvalue()


class Project:
    """A Label Studio project connected to `backend` (which then gets /setup and the webhooks)."""

    def __init__(self, label_studio, backend, title: str, extra: dict, config: str = CONFIG):
        self.ls = LabelStudio(base_url=label_studio.url, api_key=label_studio.token)
        self.url, self.headers = label_studio.url, {"Authorization": f"Token {label_studio.token}"}
        self.project = self.ls.projects.create(title=title, label_config=config)
        self.id = self.project.id
        self.ml = self.ls.ml.create(project=self.id, url=backend.url, title="autolabel", extra_params=extra)

    def upload(self, count: int, seed: int = 0) -> None:
        files = {f"f{i}": (f"img{seed}-{i}.png", photo_png(seed * 1000 + i), "image/png") for i in range(count)}
        response = requests.post(f"{self.url}/api/projects/{self.id}/import", files=files, headers=self.headers,
                                 timeout=120)
        assert response.status_code == 201, response.text

    def import_json(self, tasks: list[dict]) -> None:
        response = requests.post(f"{self.url}/api/projects/{self.id}/import", json=tasks, headers=self.headers,
                                 timeout=60)
        assert response.status_code == 201, response.text

    def task_ids(self) -> list[int]:
        return sorted(t.id for t in self.ls.tasks.list(project=self.id))

    def predictions(self) -> list[dict]:
        response = requests.get(f"{self.url}/api/predictions", params={"project": self.id}, headers=self.headers,
                                timeout=60)
        return response.json()


def jobs_of(backend, project_id, kind="predict"):
    jobs = requests.get(f"{backend.url}/jobs", params={"project": project_id}, timeout=10).json()["jobs"]
    return [j for j in jobs if j["kind"] == kind]


def wait_until(predicate, timeout_s: float, what: str, log=None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    pytest.fail(f"{what} did not happen in {timeout_s} s" + (f"\n{log.read_text()[-3000:]}" if log else ""))


def finished_jobs(backend, project_id, timeout_s=240):
    def done():
        jobs = jobs_of(backend, project_id)
        return jobs if jobs and all(j["status"] not in ("pending", "running") for j in jobs) else None
    return wait_until(done, timeout_s, "the predict job", backend.log)
