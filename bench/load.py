"""Load benchmark: N concurrent one-task `/predict` callers against a real worker (gunicorn, as `make serve` runs
it) while a poller measures `/health` latency, and the worker's peak RSS is sampled.

A loopback server plays Label Studio's file server (real photos from skimage.data). Accepted requests must
finish inside Label Studio's 100 s; the others get a deliberate 503 with Retry-After. Webhooks are posted every
0.1 s meanwhile, as Label Studio sends them.

Usage: python bench/load.py [--callers 50] [--pipeline lime] [--threads 4] [--concurrency 2]
Ends with one JSON line: p50_s, p95_s (accepted requests), share_503, errors_5xx (other than 503),
health_max_s, health_p95_s, webhook_max_s (Label Studio waits 1 s for a webhook), peak_rss_mb, callers, accepted.
"""

import argparse
import io
import json
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import psutil
import requests
from PIL import Image
from skimage import data

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.e2e.servers import BackendServer  # noqa: E402

CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
          '<Label value="cat"/><Label value="cup"/></RectangleLabels></View>')


def photo_server() -> tuple[ThreadingHTTPServer, list[str]]:
    photos = {"cat.png": data.chelsea(), "coffee.png": data.coffee(), "astronaut.png": data.astronaut(),
              "rocket.png": data.rocket()}
    encoded = {}
    for name, array in photos.items():
        buf = io.BytesIO()
        Image.fromarray(array).save(buf, format="PNG")
        encoded[f"/data/upload/1/{name}"] = buf.getvalue()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            body = encoded.get(self.path.split("?")[0])
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, sorted(encoded)


class RssSampler(threading.Thread):
    """Peak resident memory of a process tree (gunicorn master + workers), sampled every 0.2 s."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.peak_mb = 0.0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                workers = self.root.children(recursive=True)
                self.peak_mb = max(self.peak_mb, max((p.memory_info().rss for p in workers), default=0) / 2**20)
            except psutil.Error:
                pass
            time.sleep(0.2)


class Poller(threading.Thread):
    """Every 0.1 s one call (GET /health, or a webhook as Label Studio sends them); latencies and failures."""

    def __init__(self, call):
        super().__init__(daemon=True)
        self.call = call
        self.latencies: list[float] = []
        self.failures = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                ok = self.call().status_code == 200
            except requests.RequestException:
                ok = False
            self.latencies.append(time.perf_counter() - started)
            self.failures += not ok
            time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--callers", type=int, default=50)
    parser.add_argument("--pipeline", default="lime")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=2, help="PREDICT_CONCURRENCY")
    parser.add_argument("--samples", type=int, default=256, help="LIME num_samples of the project")
    args = parser.parse_args()

    images, urls = photo_server()
    base = f"http://127.0.0.1:{images.server_address[1]}"
    workdir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    server = BackendServer(workdir, base, "k" * 40, PIPELINE=args.pipeline, THREADS=str(args.threads),
                           PREDICT_CONCURRENCY=str(args.concurrency), WORKERS="1")
    try:
        setup = {"project": 1, "schema": CONFIG, "extra_params": {"num_samples": args.samples}}
        requests.post(f"{server.url}/setup", json=setup, timeout=60).raise_for_status()
        warm = {"project": 1, "tasks": [{"id": 0, "data": {"image": urls[0]}}]}
        requests.post(f"{server.url}/predict", json=warm, timeout=300).raise_for_status()  # load the model once

        event = {"action": "ANNOTATION_CREATED", "project": {"id": 999}, "annotation": {"id": 1, "task": 1}}
        sampler = RssSampler(server.process.pid)
        poller = Poller(lambda: requests.get(f"{server.url}/health", timeout=30))
        webhooks = Poller(lambda: requests.post(f"{server.url}/webhook", json=event, timeout=30))
        for thread in (sampler, poller, webhooks):
            thread.start()

        def call(i: int) -> tuple[int, float]:
            body = {"project": 1, "tasks": [{"id": i + 1, "data": {"image": urls[i % len(urls)]}}]}
            started = time.perf_counter()
            try:
                status = requests.post(f"{server.url}/predict", json=body, timeout=300).status_code
            except requests.RequestException:
                status = 599
            return status, time.perf_counter() - started

        started = time.perf_counter()
        with ThreadPoolExecutor(args.callers) as pool:
            outcomes = list(pool.map(call, range(args.callers)))
        wall = time.perf_counter() - started
        time.sleep(1.0)
        for thread in (poller, webhooks, sampler):
            thread.stop.set()
        poller.join(35)
        webhooks.join(35)
    finally:
        server.stop()
        images.shutdown()

    accepted = sorted(t for s, t in outcomes if s == 200)
    refused = sum(s == 503 for s, _ in outcomes)
    errors = sum(s >= 500 and s != 503 for s, _ in outcomes)
    health, hooks = np.array(poller.latencies), np.array(webhooks.latencies)
    for status in sorted({s for s, _ in outcomes}):
        times = [t for s, t in outcomes if s == status]
        print(f"HTTP {status}: {len(times)} requests, {min(times):.2f}-{max(times):.2f} s")
    print(f"wall {wall:.1f} s; /health polled {len(health)} times, max {health.max():.3f} s, "
          f"failures {poller.failures}; webhook max {hooks.max():.3f} s; worker peak RSS {sampler.peak_mb:.0f} MB")
    result = {
        "p50_s": round(float(np.percentile(accepted, 50)), 2) if accepted else None,
        "p95_s": round(float(np.percentile(accepted, 95)), 2) if accepted else None,
        "share_503": round(refused / len(outcomes), 3), "errors_5xx": errors,
        "health_max_s": round(float(health.max()), 3), "health_p95_s": round(float(np.percentile(health, 95)), 3),
        "health_failures": poller.failures, "webhook_max_s": round(float(hooks.max()), 3),
        "webhook_failures": webhooks.failures, "peak_rss_mb": round(sampler.peak_mb), "callers": args.callers,
        "accepted": len(accepted), "pipeline": args.pipeline, "threads": args.threads,
        "predict_concurrency": args.concurrency, "cpus": os.cpu_count(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
