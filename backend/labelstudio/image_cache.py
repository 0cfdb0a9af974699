"""A bounded on-disk cache of downloaded image bytes, keyed by URL, evicting oldest first. The cache is optional:
a write that fails (full or read-only disk) is logged and skipped, the image is still served."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from pathlib import Path

from backend.core.files import write_atomic

log = logging.getLogger(__name__)
WARN_EVERY_S = 60.0


class DiskCache:
    """Stores bytes under `root`; keeps the total under `max_bytes` (0 disables the cache)."""

    def __init__(self, root: Path, max_bytes: int):
        self.root = Path(root)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._size: int | None = None
        self.hits = 0
        self.misses = 0
        self.write_errors = 0
        self._warned_at = 0.0

    def _path(self, key: str) -> Path:
        return self.root / hashlib.sha256(key.encode()).hexdigest()

    def get(self, key: str) -> bytes | None:
        if self.max_bytes <= 0:
            return None
        path = self._path(key)
        try:
            data = path.read_bytes()
            os.utime(path)  # recently used → evicted last
        except OSError:
            self.misses += 1
            return None
        self.hits += 1
        return data

    def put(self, key: str, data: bytes) -> None:
        if self.max_bytes <= 0 or len(data) > self.max_bytes:
            return
        try:
            write_atomic(self._path(key), data)  # readers never see a partial file
        except OSError as exc:  # a full disk costs the cache, never the image
            self.write_errors += 1
            if time.monotonic() - self._warned_at >= WARN_EVERY_S:
                self._warned_at = time.monotonic()
                log.warning("image cache %s: write failed (%s); images are served uncached", self.root, exc)
            return
        with self._lock:
            if self._size is None:
                self._size = sum(size for _, size, _ in self._entries())
            else:
                self._size += len(data)
            if self._size > self.max_bytes:
                self._evict()

    def _entries(self) -> list[tuple[float, int, Path]]:
        """(mtime, size, path) of finished cache files; other threads' `.part` files may vanish meanwhile."""
        out = []
        for path in self.root.iterdir():
            if path.suffix == ".part":
                continue
            try:
                st = path.stat()
            except OSError:
                continue
            out.append((st.st_mtime, st.st_size, path))
        return out

    def _evict(self) -> None:
        files = sorted(self._entries())
        total = sum(size for _, size, _ in files)
        target = self.max_bytes * 0.8
        for _, size, path in files:
            if total <= target:
                break
            path.unlink(missing_ok=True)
            total -= size
        self._size = total
