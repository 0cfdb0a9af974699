"""Fair jobs: work users wait for never queues behind a long training. A real Label Studio and the backend as
`make serve` runs it (in-process job runner, default `JOB_THREADS`); project A starts a training with a 15-minute
budget (`train_time_budget_s` 900), and while it runs:

- project B's review page is refreshed (`POST /review/refresh`): seconds until `/review.json` is ready;
- a new version of project A is activated (`POST /versions/activate`): seconds until its re-prediction job starts
  (and until it is done).

Goals (issue: first contact): review ready ≤ 10 s, re-prediction started ≤ 10 s, with A's training still running.
The training is cancelled once both are measured (the 15-minute budget only makes sure it outlasts them).

Usage: python bench/fairness.py [--tasks 12]
Ends with one JSON line: review_ready_s, repredict_start_s, repredict_done_s, training_running, job_threads.
"""

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import requests
from label_studio_sdk.client import LabelStudio
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from backend.models.detector import DetectorSpec, build_detector  # noqa: E402
from backend.models.detector_io import save_detector  # noqa: E402
from backend.registry.versions import DETECTOR, Registry  # noqa: E402
from tests.e2e.projects import wait_until as wait  # noqa: E402
from tests.e2e.servers import BackendServer, LabelStudioServer, label_studio_binary  # noqa: E402

CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
          '<Label value="blob"/></RectangleLabels></View>')
FAST = {"num_samples": 16, "superpixels": 8, "review_score": "confidence"}  # cheap LIME: the jobs are measured


def blob_png(seed: int, size: int = 160) -> tuple[bytes, list[float]]:
    """A noise image with one bright square; (PNG, box as percent x, y, w, h)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 90, (size, size, 3), dtype=np.uint8)
    side = int(rng.integers(30, 60))
    x, y = (int(v) for v in rng.integers(5, size - side - 5, 2))
    image[y:y + side, x:x + side] = (230, 200, 40)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue(), [100 * x / size, 100 * y / size, 100 * side / size, 100 * side / size]


def make_project(ls: LabelStudio, label_studio, backend, title: str, extra: dict, count: int, annotate: int):
    project = ls.projects.create(title=title, label_config=CONFIG)
    headers = {"Authorization": f"Token {label_studio.token}"}
    boxes = {}
    files = {}
    for i in range(count):
        png, box = blob_png(hash(title) % 1000 + i)
        files[f"f{i}"] = (f"{title}-{i}.png", png, "image/png")
        boxes[f"{title}-{i}.png"] = box
    response = requests.post(f"{label_studio.url}/api/projects/{project.id}/import", files=files, headers=headers,
                             timeout=120)
    assert response.status_code == 201, response.text
    tasks = sorted(ls.tasks.list(project=project.id), key=lambda t: t.id)
    for task in tasks[:annotate]:
        name = next(n for n in boxes if task.data["image"].endswith(n))
        x, y, w, h = boxes[name]
        ls.annotations.create(id=task.id, result=[{
            "from_name": "box", "to_name": "image", "type": "rectanglelabels", "original_width": 160,
            "original_height": 160, "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0,
                                               "rectanglelabels": ["blob"]}}])
    ml = ls.ml.create(project=project.id, url=backend.url, title="autolabel", extra_params=extra)
    return project.id, ml.id


def jobs(backend, project_id: int) -> list[dict]:
    return requests.get(f"{backend.url}/jobs", params={"project": project_id}, timeout=10).json()["jobs"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=12)
    args = parser.parse_args()
    binary = label_studio_binary()
    if binary is None:
        raise SystemExit("Label Studio is not installed: run `make install-ls`")
    work = Path(__import__("tempfile").mkdtemp(prefix="fairness-"))
    label_studio = LabelStudioServer(binary, work / "label-studio")
    backend = BackendServer(work / "backend", label_studio.url, label_studio.token)  # make serve defaults
    try:
        ls = LabelStudio(base_url=label_studio.url, api_key=label_studio.token)
        long_training = {**FAST, "train_time_budget_s": 900, "train_epochs": 10000, "train_image_size": 160,
                         "train_min_new": 1000}
        a, _ = make_project(ls, label_studio, backend, "trains", long_training, args.tasks, annotate=args.tasks - 4)
        b, _ = make_project(ls, label_studio, backend, "reviews", {**FAST, "train_min_new": 1000}, 6, annotate=4)
        wait(lambda: all(j["status"] not in ("pending", "running") for p in (a, b) for j in jobs(backend, p)
                         if j["kind"] == "predict") and all(jobs(backend, p) for p in (a, b)), 600,
             "the Connect's pre-labelling jobs")
        train = requests.post(f"{backend.url}/jobs", json={"project": a, "kind": "train"}, timeout=10).json()["job"]
        wait(lambda: next(j for j in jobs(backend, a) if j["id"] == train)["status"] == "running", 120,
             "project A's training to start")
        time.sleep(5)  # the training is under way (dataset loaded, epochs running)
        print(f"project A ({a}) training job {train} running with a 900 s budget")

        asked = time.monotonic()
        requests.post(f"{backend.url}/review/refresh", params={"project": b}, timeout=10)
        wait(lambda: requests.get(f"{backend.url}/review.json", params={"project": b}, timeout=10).json()
             .get("status") == "ready", 300, "project B's review page")
        review_ready_s = time.monotonic() - asked
        print(f"project B ({b}) review page ready in {review_ready_s:.1f} s")

        registry = Registry(backend.model_dir)
        with registry.staging(a, DETECTOR) as staging:
            save_detector(staging, build_detector(DetectorSpec(num_classes=1, min_size=128, max_size=160),
                                                  pretrained=False), ["blob"], {})
            version = registry.commit(staging, a, DETECTOR, {"classes": ["blob"], "ap50": 0.0, "ap": 0.0})
        activated_at = time.time()
        answer = requests.post(f"{backend.url}/versions/activate", json={"project": a, "version": version.name,
                                                                          "kind": "detector"}, timeout=30).json()
        job_id = answer["predict_job"]
        started = wait(lambda: next(j for j in jobs(backend, a) if j["id"] == job_id).get("started_at"), 300,
                       "the re-prediction to start")
        repredict_start_s = started - activated_at
        done = wait(lambda: (lambda j: j if j["status"] not in ("pending", "running") else None)(
            next(j for j in jobs(backend, a) if j["id"] == job_id)), 600, "the re-prediction to finish")
        repredict_done_s = done["finished_at"] - activated_at
        training = next(j for j in jobs(backend, a) if j["id"] == train)
        print(f"project A re-prediction (job {job_id}, {done['message']}) started {repredict_start_s:.1f} s and "
              f"finished {repredict_done_s:.1f} s after the activation; training job {training['status']}")
        requests.post(f"{backend.url}/jobs/{train}/cancel", timeout=10)
        health = requests.get(f"{backend.url}/health", timeout=10).json()
        print(json.dumps({"review_ready_s": round(review_ready_s, 2), "repredict_start_s": round(repredict_start_s, 2),
                          "repredict_done_s": round(repredict_done_s, 2),
                          "training_running": training["status"] == "running",
                          "job_threads": health.get("job_threads")}))
    finally:
        backend.stop()
        label_studio.stop()


if __name__ == "__main__":
    main()
