"""Can this process write its state right now? A full disk, a quota or a read-only mount under `MODEL_DIR` must
show in `/health` (`"status": "DEGRADED"`) and turn requests into a 503 naming the cause, never a 500 or a dead
job-runner thread.

`is_storage_error(exc)` recognises what such a disk raises (SQLite "database or disk is full", "attempt to write a
readonly database", disk I/O errors; `OSError` ENOSPC, EDQUOT, EROFS, EIO, EFBIG). `StorageProbe.current()` answers
from its last check and has a small file (16 KiB, fsynced) and one SQLite row written under `MODEL_DIR` in the
background at most every `max_age_s` seconds.
"""

from __future__ import annotations

import errno
import sqlite3
import threading
import time
from pathlib import Path

from backend.core.files import check_writable_dir
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
    """The last write check of `model_dir` and its SQLite file. `current()` never waits on the disk: it answers the
    last check and starts a new one in the background when that is older than `max_age_s` (a busy database — another
    writer holding the lock — is not a failure: the previous answer stays)."""

    def __init__(self, model_dir: Path, db: Database, max_age_s: float = 5.0):
        self.model_dir = Path(model_dir)
        self.db = db
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._checked_at = 0.0
        self._checking = False
        self._error: str | None = None

    def current(self) -> dict:
        """{"state": "ok" | "failing", "error"?: why} as of the last check."""
        with self._lock:
            stale = time.monotonic() - self._checked_at >= self.max_age_s and not self._checking
            if stale:
                self._checking = True
        if stale:
            threading.Thread(target=self.refresh, name="storage-probe", daemon=True).start()
        error = self._error
        return {"state": "failing", "error": error} if error else {"state": "ok"}

    def refresh(self) -> dict:
        """Check now (blocking) and keep the result."""
        try:
            error = self._probe()
            if error != "busy":
                self._error = error
        finally:
            with self._lock:
                self._checked_at = time.monotonic()
                self._checking = False
        return self.current()

    def _probe(self) -> str | None:
        try:
            check_writable_dir(self.model_dir, "MODEL_DIR", PROBE_BYTES)
            db = self.db.connect()
            db.execute(SCHEMA)
            db.execute("INSERT OR REPLACE INTO storage_probe (id, at) VALUES (1, ?)", (time.time(),))
        except RuntimeError as exc:
            return str(exc)
        except sqlite3.Error as exc:
            if "locked" in str(exc).lower() or "busy" in str(exc).lower():
                return "busy"
            return storage_message(exc, self.model_dir)
        return None
