"""Can this process write its state right now? A full disk, a quota or a read-only mount under `MODEL_DIR` must
show in `/health` (`"status": "DEGRADED"`) and turn requests into a 503 naming the cause, never a 500 or a dead
job-runner thread.

`is_storage_error(exc)` recognises what such a disk raises (SQLite "database or disk is full", "attempt to write a
readonly database", disk I/O errors; `OSError` ENOSPC, EDQUOT, EROFS, EIO, EFBIG). `StorageProbe.current()` writes a
small file and one SQLite row under `MODEL_DIR`, at most every `max_age_s` seconds, and says whether that worked.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

from backend.store.database import Database

STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG}
SQLITE_STORAGE_WORDS = ("disk is full", "database or disk is full", "readonly", "disk i/o error",
                        "unable to open database", "no space")
PROBE_BYTES = 16 * 1024
SCHEMA = "CREATE TABLE IF NOT EXISTS storage_probe (id INTEGER PRIMARY KEY CHECK (id = 1), at REAL NOT NULL);"


def is_storage_error(exc: BaseException) -> bool:
    """Whether `exc` comes from storage that cannot be written (full, read-only, failing)."""
    if isinstance(exc, sqlite3.Error):
        return any(word in str(exc).lower() for word in SQLITE_STORAGE_WORDS)
    return isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS


def storage_message(exc: BaseException, where: Path | str) -> str:
    """"the state under MODEL_DIR=… cannot be written: <cause>" for an admin."""
    cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return f"the state under MODEL_DIR={where} cannot be written ({cause}): free disk space or fix its permissions"


class StorageProbe:
    """The last write check of `model_dir` and its SQLite file, refreshed when older than `max_age_s`."""

    def __init__(self, model_dir: Path, db: Database, max_age_s: float = 5.0):
        self.model_dir = Path(model_dir)
        self.db = db
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._checked_at = 0.0
        self._error: str | None = None

    def current(self) -> dict:
        """{"state": "ok" | "failing", "error"?: why}; probes when the last check is older than `max_age_s`."""
        with self._lock:
            if time.monotonic() - self._checked_at >= self.max_age_s:
                self._error = self._probe()
                self._checked_at = time.monotonic()
            return {"state": "failing", "error": self._error} if self._error else {"state": "ok"}

    def _probe(self) -> str | None:
        try:
            fd, path = tempfile.mkstemp(dir=self.model_dir, prefix=".storage-probe-")
            try:
                os.write(fd, b"\0" * PROBE_BYTES)
                os.fsync(fd)
            finally:
                os.close(fd)
                os.unlink(path)
            db = self.db.connect()
            db.execute(SCHEMA)
            db.execute("INSERT OR REPLACE INTO storage_probe (id, at) VALUES (1, ?)", (time.time(),))
        except (OSError, sqlite3.Error) as exc:
            return storage_message(exc, self.model_dir)
        return None
