"""Faults, end to end, against the backend as `make serve` runs it (gunicorn + waitress workers), a real Label
Studio where the fault needs one, a real tmpfs that fills up, a real Redis that goes away:

1. slow clients: 16 connections that send a byte or part of a request and stall; the slowest of 20 `/health`
   calls meanwhile (also measured against gunicorn's gthread worker, the front before this change);
2. a full disk: MODEL_DIR on a 16 MiB tmpfs filled to the last byte while jobs run; whether the job runner still
   runs jobs once the disk is freed, and what routes answered meanwhile (root only: it mounts a tmpfs);
3. a crash loop: a job whose worker process dies as the OOM killer ends it (SIGKILL), restarted each time: how
   many attempts before it stops (the keyframe at frame 2·10⁷ that caused it is now refused before any
   interpolation: `tests/test_faults.py`);
4. a video bomb: one 12288² MJPEG frame (and an 8192² video of 4 frames) through the video path of predictions,
   in a fresh process: its peak memory above the process's baseline;
5. a Label Studio outage: a project of 48 tasks pre-labelled by the background job while Label Studio is stopped
   for 15 s (and then takes its ~30 s to boot): tasks left without a prediction;
6. a Redis outage: a job requested while Redis is down; seconds from Redis's return until the job is in the RQ
   queue.

Every response is counted: `errors_5xx` is the number of 5xx answers other than a deliberate 503 that names its
cause (a full disk, Label Studio unreachable).

Usage: python bench/faults.py [--skip-label-studio]
Ends with one JSON line: slow_clients_health_max_s, slow_clients_health_max_s_gthread, disk_full_runner_alive,
crash_loop_attempts, video_bomb_peak_mb, video_8192_peak_mb, ls_outage_tasks_unlabelled, ls_outage_s,
redis_outage_pending_after_s, errors_5xx.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import av
import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from backend.jobs.queue import JobQueue  # noqa: E402
from backend.store.database import Database  # noqa: E402
from tests.conftest import FilePeer, _redis_binary, fill_disk, stalled_connections  # noqa: E402
from tests.e2e.projects import photo_png, wait_until  # noqa: E402
from tests.e2e.servers import BackendServer, LabelStudioServer, free_port, label_studio_binary  # noqa: E402

CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
          '<Label value="cat"/><Label value="cup"/></RectangleLabels></View>')
ANSWERS: list[tuple[str, int, str]] = []  # (what, status, error) of every answer the bench got


def call(method: str, url: str, what: str, **kwargs) -> requests.Response:
    response = requests.request(method, url, timeout=kwargs.pop("timeout", 30), **kwargs)
    try:
        error = response.json().get("error", "") if response.status_code >= 400 else ""
    except ValueError:
        error = response.text[:200]
    ANSWERS.append((what, response.status_code, error))
    return response


def errors_5xx() -> list:
    """5xx answers that are not a deliberate 503 naming its cause."""
    return [a for a in ANSWERS if a[1] >= 500 and not (a[1] == 503 and a[2])]


def slow_clients(workdir: Path, peer: FilePeer, worker: str | None = None) -> float:
    """The slowest of 20 /health calls while 16 connections stall."""
    env = {"PRELOAD_MODELS": "false", "RUN_JOBS": "false"}
    conf = None
    if worker:  # the front before: gunicorn's threaded worker
        conf = workdir / f"conf-{worker}.py"
        conf.write_text(f"from backend.service.gunicorn_conf import *\nworker_class = {worker!r}\n")
    server = BackendServer(workdir / f"slow-{worker or 'waitress'}", peer.url, "0" * 40, config=conf, **env)
    try:
        with stalled_connections(server.port, 16):
            slowest = 0.0
            for _ in range(20):
                started = time.perf_counter()
                try:
                    requests.get(f"{server.url}/health", timeout=10)
                    slowest = max(slowest, time.perf_counter() - started)
                except requests.RequestException:  # no answer within 10 s: starved
                    slowest = max(slowest, 10.0)
                    break
        return round(slowest, 3)
    finally:
        server.stop()


def disk_full(workdir: Path, peer: FilePeer) -> bool | None:
    """Whether the runner still runs jobs after MODEL_DIR's disk was full (None: no tmpfs can be mounted here)."""
    mount = workdir / "small-disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True).returncode:
        print("disk full: cannot mount a tmpfs here (not root?): skipped")
        return None
    server = BackendServer(workdir / "disk", peer.url, "0" * 40, MODEL_DIR=str(mount / "models"),
                           PRELOAD_MODELS="false")
    try:
        call("POST", f"{server.url}/setup", "setup", json={"project": 1, "schema": CONFIG,
                                                          "extra_params": {"auto_predict": False}})
        filler = fill_disk(mount)
        for method, path, body in [("POST", "/jobs", {"project": 1, "kind": "train"}),
                                   ("POST", "/webhook", {"action": "START_TRAINING", "project": {"id": 1}}),
                                   ("POST", "/setup", {"project": 1, "schema": CONFIG}),
                                   ("GET", "/review?project=1", None), ("GET", "/jobs?project=1", None),
                                   ("POST", "/predict", {"project": 1, "tasks": [{"id": 1, "data": {
                                       "image": "/data/upload/1/cat.png"}}]})]:
            response = call(method, f"{server.url}{path}", f"full disk {path}", json=body)
            print(f"full disk: {method} {path} -> {response.status_code} {ANSWERS[-1][2][:90]}")
        health = call("GET", f"{server.url}/health", "full disk /health").json()
        print(f"full disk: /health status {health['status']}: {health['storage'].get('error', '')[:100]}")
        time.sleep(3)
        filler.unlink()
        time.sleep(6)  # the storage probe's cache
        job = call("POST", f"{server.url}/jobs", "freed /jobs", json={"project": 1, "kind": "train"}).json()["job"]
        ended = wait_until(lambda: (lambda j: j if j["status"] not in ("pending", "running") else None)(
            next(j for j in requests.get(f"{server.url}/jobs?project=1", timeout=10).json()["jobs"]
                 if j["id"] == job)), 60, "a job after the disk was freed")
        health = call("GET", f"{server.url}/health", "freed /health").json()
        print(f"disk freed: job {job} {ended['status']} ({ended['message'][:80]}); /health {health['status']}")
        return ended["status"] in ("done", "failed", "skipped") and health["status"] == "UP"
    finally:
        server.stop()
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def crash_loop(workdir: Path) -> int:
    """Attempts of a job whose worker is SIGKILLed each time (the OOM killer), restarting the worker each time."""
    state = workdir / "crash.sqlite"
    JobQueue(Database(state)).enqueue(1, "train", "ANNOTATION_CREATED")
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from backend.jobs.queue import JobQueue
        from backend.jobs.runner import JobRunner
        from backend.store.database import Database
        queue = JobQueue(Database(Path({str(state)!r})))
        queue.recover()
        JobRunner(queue, {{"train": lambda job, stop: os.kill(os.getpid(), 9)}}).run_once()
    """)
    for _ in range(20):
        if JobQueue(Database(state)).jobs()[0]["status"] not in ("pending", "running"):
            break
        subprocess.run([sys.executable, "-c", script], timeout=120)
    (job,) = JobQueue(Database(state)).jobs()
    print(f"crash loop: job {job['status']} after {job['attempts']} attempts: {job['message']}")
    return int(job["attempts"])


def video_file(path: Path, side: int, frames: int) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mjpeg", rate=10)
        stream.width = stream.height = side
        stream.pix_fmt = "yuvj420p"
        image = np.zeros((side, side, 3), np.uint8)
        image[: side // 2, : side // 3] = (200, 180, 40)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        del image
        for _ in range(frames):
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def video_peak_mb(path: Path, bounded: bool = True) -> tuple[float, str]:
    """Peak RSS above the baseline of a fresh process running the video path's decoding (probe, then the sampled
    frames at the working size, under the default pixel budget). Read from VmHWM: `ru_maxrss` survives execve and
    would report this bench's own peak."""
    script = textwrap.dedent(f"""
        import json, sys

        def peak_kb():
            for line in open("/proc/self/status"):
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])

        sys.path.insert(0, {str(ROOT)!r})
        from backend.core.errors import TaskError
        from backend.core.settings import Settings
        from backend.labelstudio.video import probe_video, read_frames
        settings = Settings() if {bounded!r} else Settings(max_image_pixels=10**12, working_image_side=10**6)
        base = peak_kb()
        try:
            probe_video({str(path)!r}, settings.max_image_pixels)
            frames = list(read_frames({str(path)!r}, 1, None, None, settings.working_image_side,
                                      settings.max_image_pixels))
            outcome = f"{{len(frames)}} frames of {{frames[0].image.shape[1]}}x{{frames[0].image.shape[0]}}"
        except TaskError as exc:
            outcome = f"refused: {{exc.message}}"
        peak = peak_kb()
        print(json.dumps({{"peak_mb": (peak - base) / 1024, "outcome": outcome}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return round(result["peak_mb"], 1), result["outcome"]


def label_studio_outage(work: Path, binary: str) -> tuple[int, float]:
    """Tasks without a prediction after a background job met a Label Studio outage of 15 s (+ its boot)."""
    from label_studio_sdk.client import LabelStudio

    label_studio = LabelStudioServer(binary, work / "label-studio")
    backend = BackendServer(work / "outage", label_studio.url, label_studio.token, PRELOAD_MODELS="true")
    try:
        ls = LabelStudio(base_url=label_studio.url, api_key=label_studio.token)
        project = ls.projects.create(title="outage", label_config=CONFIG)
        ls.ml.create(project=project.id, url=backend.url, title="autolabel",
                     extra_params={"num_samples": 32, "superpixels": 16})
        files = {f"f{i}": (f"img{i}.png", photo_png(i), "image/png") for i in range(48)}
        headers = {"Authorization": f"Token {label_studio.token}"}
        requests.post(f"{label_studio.url}/api/projects/{project.id}/import", files=files, headers=headers, timeout=120)

        def predicted() -> int:
            response = requests.get(f"{label_studio.url}/api/predictions", params={"project": project.id},
                                    headers=headers, timeout=30)
            return len({p["task"] for p in response.json()})
        wait_until(lambda: predicted() >= 8, 300, "the first predictions")
        down = time.monotonic()
        print(f"Label Studio stopped with {predicted()} of 48 tasks predicted")
        label_studio.stop()
        time.sleep(15)
        label_studio.restart()
        outage = time.monotonic() - down
        print(f"Label Studio back after {outage:.0f} s")

        def idle():
            jobs = requests.get(f"{backend.url}/jobs", params={"project": project.id}, timeout=10).json()["jobs"]
            return jobs if jobs and all(j["status"] not in ("pending", "running") for j in jobs) else None
        jobs = wait_until(idle, 600, "the predict jobs")
        for job in jobs:
            print(f"  job {job['id']} ({job['trigger']}): {job['status']} {job['message'][:120]}")
        left = 48 - predicted()
        print(f"Label Studio outage: {left} of 48 tasks left without a prediction")
        return left, round(outage, 1)
    finally:
        backend.stop()
        label_studio.stop()


def redis_outage(work: Path, peer: FilePeer) -> float | None:
    """Seconds from Redis's return until a job requested while it was down is in the RQ queue."""
    binary = _redis_binary()
    if binary is None:
        print("Redis outage: no redis-server binary: skipped")
        return None
    port = free_port()
    backend = BackendServer(work / "redis", peer.url, "0" * 40, REDIS_URL=f"redis://127.0.0.1:{port}/0",
                            PRELOAD_MODELS="false")
    try:
        call("POST", f"{backend.url}/setup", "redis setup", json={"project": 1, "schema": CONFIG,
                                                                  "extra_params": {"auto_predict": False}})
        started = time.perf_counter()
        call("POST", f"{backend.url}/webhook", "webhook, Redis down",
             json={"action": "START_TRAINING", "project": {"id": 1}})
        print(f"Redis down: the webhook answered in {time.perf_counter() - started:.2f} s")
        time.sleep(3)
        server = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                                   "no", "--dir", str(work)], stdout=subprocess.DEVNULL)
        try:
            from redis import Redis
            from rq import Queue

            from backend.jobs.rq_dispatch import TRAIN_QUEUE
            back = time.monotonic()
            queue = Queue(TRAIN_QUEUE, connection=Redis(port=port))
            while time.monotonic() - back < 60:
                try:
                    if queue.count:
                        break
                except Exception:  # noqa: BLE001 - starting
                    pass
                time.sleep(0.1)
            after = time.monotonic() - back
            print(f"Redis back: the pending job was in the queue {after:.1f} s later")
            return round(after, 2)
        finally:
            server.kill()
            server.wait(5)
    finally:
        backend.stop()


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-label-studio", action="store_true", help="skip the Label Studio outage")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="faults-"))
    peer = FilePeer()
    peer.routes["/data/upload/1/cat.png"] = (200, photo_png(1), {})
    results = {}
    try:
        results["slow_clients_health_max_s"] = slow_clients(work, peer)
        results["slow_clients_health_max_s_gthread"] = slow_clients(work, peer, "gthread")
        print(f"slow clients: /health at most {results['slow_clients_health_max_s']} s (gthread worker: "
              f"{results['slow_clients_health_max_s_gthread']} s)")
        results["disk_full_runner_alive"] = disk_full(work, peer)
        results["crash_loop_attempts"] = crash_loop(work)
        results["video_bomb_peak_mb"], outcome = video_peak_mb(video_file(work / "bomb.avi", 12288, 1))
        print(f"video bomb 12288²: +{results['video_bomb_peak_mb']} MB ({outcome})")
        unbounded, outcome = video_peak_mb(work / "bomb.avi", bounded=False)
        print(f"  the same without the pixel budget (as before): +{unbounded} MB ({outcome})")
        results["video_8192_peak_mb"], outcome = video_peak_mb(video_file(work / "big.avi", 8192, 4))
        print(f"video 8192² x 4 frames: +{results['video_8192_peak_mb']} MB ({outcome})")
        unbounded, outcome = video_peak_mb(work / "big.avi", bounded=False)
        print(f"  the same without the pixel budget (as before): +{unbounded} MB ({outcome})")
        binary = label_studio_binary()
        if binary and not args.skip_label_studio:
            results["ls_outage_tasks_unlabelled"], results["ls_outage_s"] = label_studio_outage(work, binary)
        results["redis_outage_pending_after_s"] = redis_outage(work, peer)
    finally:
        peer.close()
    results["errors_5xx"] = len(errors_5xx())
    for what, status, error in errors_5xx():
        print(f"5xx: {what}: {status} {error[:120]}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
