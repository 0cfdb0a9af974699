"""Background pre-annotation throughput: a real Label Studio project of N image tasks pre-labelled by the predict
job that importing them starts (download → pipeline → stored in Label Studio), against the same pipeline (and the
same review-score pass) on the same images, decoded in memory, in one process.

Also the backend worker's memory: RSS after the last task against RSS once 100 tasks were done.

Usage: python bench/batch_predict.py [--tasks 500] [--samples 32] [--device cpu|cuda] [--side 320]
Ends with one JSON line: images_per_s, pipeline_images_per_s, ratio, rss_growth_mb, tasks, device.
"""

import argparse
import io
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import requests
from PIL import Image
from skimage import data

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from backend.adapters.base import LazyModel  # noqa: E402
from backend.adapters.classifier import build_classifier  # noqa: E402
from backend.core.device import BACKGROUND, DeviceGate  # noqa: E402
from backend.core.params import PredictParams  # noqa: E402
from backend.labelstudio.config import parse_label_config  # noqa: E402
from backend.pipelines.lime_boxes import LimeBoxesPipeline  # noqa: E402
from backend.predictions.priority import ReviewScorer  # noqa: E402
from tests.e2e.servers import BackendServer, LabelStudioServer, label_studio_binary  # noqa: E402

CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
          '<Label value="cat"/><Label value="cup"/></RectangleLabels></View>')
PHOTOS = (data.chelsea(), data.coffee(), data.astronaut(), data.rocket())


def images(count: int, side: int) -> list[bytes]:
    """`count` PNGs: random crops of real photos, longer side `side` pixels."""
    rng, out = np.random.default_rng(0), []
    for i in range(count):
        photo = PHOTOS[i % len(PHOTOS)]
        h, w = photo.shape[:2]
        ch, cw = int(h * rng.uniform(0.6, 0.9)), int(w * rng.uniform(0.6, 0.9))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = Image.fromarray(photo[y:y + ch, x:x + cw])
        crop.thumbnail((side, side))
        buf = io.BytesIO()
        crop.save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def in_process(pngs: list[bytes], params: PredictParams, device: str, workdir: Path) -> float:
    """Images per second of the pipeline + review-score pass alone (images decoded in memory, chunks of 8)."""
    classifier = build_classifier("efficientnet-lite0", device, workdir / "onnx")
    pipeline = LimeBoxesPipeline(LazyModel("classifier", "efficientnet-lite0", lambda: classifier))
    ontology = parse_label_config(CONFIG)
    arrays = [np.array(Image.open(io.BytesIO(png)).convert("RGB")) for png in pngs]

    class Selector:  # what ReviewScorer needs from the pipeline selector: `run` under a device gate
        gate = DeviceGate(device)

        def run(self, pipeline, images, ontology, params, priority):
            from backend.pipelines.base import run_pipeline

            return pipeline, run_pipeline(pipeline, images, ontology, params, self.gate, priority)

    scorer, selector = ReviewScorer(params.review_score), Selector()
    scorer.run(selector, pipeline, arrays[:2], ontology, params, BACKGROUND)  # warm-up
    started = time.perf_counter()
    for start in range(0, len(arrays), 8):
        scorer.run(selector, pipeline, arrays[start:start + 8], ontology, params, BACKGROUND)
    return len(arrays) / (time.perf_counter() - started)


class Sampler(threading.Thread):
    """Every 0.5 s: the backend worker's RSS and the job's done count."""

    def __init__(self, backend: BackendServer, project_id: int):
        super().__init__(daemon=True)
        self.backend, self.project_id = backend, project_id
        self.samples: list[tuple[float, int, float]] = []  # (time, done, RSS MB)
        self.stop = threading.Event()

    def run(self):
        root = psutil.Process(self.backend.process.pid)
        while not self.stop.is_set():
            try:
                workers = root.children(recursive=True)
                rss = max((p.memory_info().rss for p in workers), default=0) / 2**20
                jobs = requests.get(f"{self.backend.url}/jobs", params={"project": self.project_id}, timeout=10).json()
                done = sum((j.get("progress") or {}).get("done", 0) for j in jobs["jobs"] if j["kind"] == "predict")
                self.samples.append((time.time(), done, rss))
            except (psutil.Error, requests.RequestException, ValueError):
                pass
            time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--samples", type=int, default=32, help="LIME num_samples")
    parser.add_argument("--side", type=int, default=320, help="longer side of the task images")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    binary = label_studio_binary()
    if binary is None:
        raise SystemExit("Label Studio is not installed: make install-ls")
    workdir = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    pngs = images(args.tasks, args.side)
    extra = {"num_samples": args.samples}
    params = PredictParams().with_overrides(extra)

    pipeline_rate = in_process(pngs, params, args.device, workdir)
    print(f"pipeline alone: {pipeline_rate:.2f} images/s ({args.tasks} images, {args.samples} samples, mirror pass)")

    label_studio = LabelStudioServer(binary, workdir / "ls")
    backend = BackendServer(workdir / "backend", label_studio.url, label_studio.token, PIPELINE="lime",
                            PRELOAD_MODELS="true", DEVICE=args.device)
    headers = {"Authorization": f"Token {label_studio.token}"}
    try:
        project = requests.post(f"{label_studio.url}/api/projects", json={"title": "bench", "label_config": CONFIG},
                                headers=headers, timeout=60).json()
        requests.post(f"{label_studio.url}/api/ml", json={"project": project["id"], "url": backend.url,
                                                          "title": "autolabel", "extra_params": extra},
                      headers=headers, timeout=60).raise_for_status()
        sampler = Sampler(backend, project["id"])
        sampler.start()
        for start in range(0, len(pngs), 50):  # Label Studio's own upload, 50 files per request
            files = {f"f{i}": (f"img{i}.png", pngs[i], "image/png") for i in range(start, min(start + 50, len(pngs)))}
            requests.post(f"{label_studio.url}/api/projects/{project['id']}/import", files=files, headers=headers,
                          timeout=300).raise_for_status()
        jobs = wait_for_jobs(backend, project["id"])
        sampler.stop.set()
        sampler.join(10)
        stored = predictions_per_task(label_studio.url, headers, project["id"])
    finally:
        backend.stop()
        label_studio.stop()
    report(jobs, stored, sampler.samples, pipeline_rate, args)


def predictions_per_task(url: str, headers: dict, project_id: int) -> list[int]:
    """Label Studio's prediction count of every task of the project (Data Manager pages)."""
    counts, page = [], 1
    while True:
        body = requests.get(f"{url}/api/tasks", params={"project": project_id, "page": page, "page_size": 100},
                            headers=headers, timeout=300)
        if body.status_code == 404:  # past the last page
            return counts
        tasks = body.json()["tasks"]
        counts += [int(t.get("total_predictions") or 0) for t in tasks]
        if not tasks:
            return counts
        page += 1


def wait_for_jobs(backend: BackendServer, project_id: int, timeout_s: float = 7200) -> list[dict]:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        jobs = [j for j in requests.get(f"{backend.url}/jobs", params={"project": project_id}, timeout=10)
                .json()["jobs"] if j["kind"] == "predict"]
        if jobs and all(j["status"] not in ("pending", "running") for j in jobs):
            return jobs
        time.sleep(2)
    raise SystemExit(f"jobs did not finish: {jobs}")


def report(jobs: list[dict], stored: list, samples: list, pipeline_rate: float, args) -> None:
    started, finished = min(j["started_at"] for j in jobs), max(j["finished_at"] for j in jobs)
    predicted = sum(j["result"].get("predicted", 0) for j in jobs)
    rate = predicted / (finished - started)
    at_100 = next((rss for _, done, rss in samples if done >= 100), None)
    last = [rss for t, _, rss in samples if t <= finished + 1][-1] if samples else None
    growth = round(last - at_100, 1) if at_100 is not None and last is not None else None
    once, missing, twice = (sum(c == 1 for c in stored), sum(c == 0 for c in stored), sum(c > 1 for c in stored))
    print(f"tasks in Label Studio: {len(stored)}; with one prediction {once}, none {missing}, several {twice}")
    print(f"jobs: {len(jobs)}, predicted {predicted}, stored {sum(stored)} predictions, "
          f"{finished - started:.0f} s from the first job's start to the last one's end: {rate:.2f} images/s")
    print(f"worker RSS: {at_100} MB after 100 tasks, {last} MB after the last")
    print(json.dumps({"images_per_s": round(rate, 3), "pipeline_images_per_s": round(pipeline_rate, 3),
                      "ratio": round(rate / pipeline_rate, 3), "rss_growth_mb": growth, "rss_at_100_mb": at_100,
                      "tasks": args.tasks, "predicted": predicted, "stored": sum(stored), "tasks_with_one": once,
                      "tasks_without": missing, "tasks_with_several": twice, "device": args.device,
                      "num_samples": args.samples, "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
