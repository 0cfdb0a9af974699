"""Background jobs in the SQLite state file: at most one pending job per (project, kind), claimed atomically,
run by a worker thread in the service process, and re-run after a crash.

A burst of webhook events coalesces into one pending row (a partial unique index enforces it). A job left
`running` by a process that no longer exists goes back to `pending` when a worker starts.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import threading
import time
from typing import Callable

from backend.core.cancel import StopFlag
from backend.core.errors import Cancelled
from backend.store.database import Database

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    trigger TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    worker TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    result TEXT NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX IF NOT EXISTS one_pending_job ON jobs (project_id, kind) WHERE status = 'pending';
"""


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(worker: str | None) -> bool:
    if not worker or ":" not in worker:
        return False
    host, pid = worker.rsplit(":", 1)
    if host != socket.gethostname():
        return True  # another machine's worker: cannot tell, leave it
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return False
    return True


class JobQueue:
    def __init__(self, db: Database):
        self.db = db.ensure(SCHEMA)
        self.wakeup = threading.Event()

    def enqueue(self, project_id: int, kind: str, trigger: str) -> tuple[int, bool]:
        """(job id, created): a new pending job, or the project's already pending one (coalesced)."""
        db = self.db.connect()
        cursor = db.execute("INSERT OR IGNORE INTO jobs (project_id, kind, status, trigger, created_at) "
                            "VALUES (?, ?, 'pending', ?, ?)", (project_id, kind, trigger, time.time()))
        created = cursor.rowcount == 1
        job_id = cursor.lastrowid if created else db.execute(
            "SELECT id FROM jobs WHERE project_id = ? AND kind = ? AND status = 'pending'", (project_id, kind)
        ).fetchone()[0]
        if created:
            self.wakeup.set()
        return int(job_id), created

    def claim(self, job_id: int | None = None) -> dict | None:
        """Atomically move the oldest pending job (or job `job_id`, if still pending) to `running` for this
        process; None when there is nothing to claim."""
        db = self.db.connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            where, args = ("id = ? AND", (job_id,)) if job_id is not None else ("", ())
            row = db.execute(f"SELECT * FROM jobs WHERE {where} status = 'pending' ORDER BY id LIMIT 1",
                             args).fetchone()
            if row is None:
                db.execute("COMMIT")
                return None
            db.execute("UPDATE jobs SET status = 'running', worker = ?, started_at = ?, attempts = attempts + 1 "
                       "WHERE id = ?", (worker_id(), time.time(), row["id"]))
            db.execute("COMMIT")
        except Exception:
            db.execute("ROLLBACK")
            raise
        return dict(row) | {"status": "running"}

    def finish(self, job_id: int, ok: bool, message: str, result: dict | None = None) -> None:
        self.db.connect().execute(
            "UPDATE jobs SET status = ?, finished_at = ?, message = ?, result = ? WHERE id = ?",
            ("done" if ok else "failed", time.time(), message[:2000], json.dumps(result or {}), job_id))

    def requeue(self, job_id: int, message: str) -> bool:
        """A running job back to `pending` (it runs again from the start); if the project already has a pending
        job of that kind, this one fails instead. Returns whether it was re-queued."""
        try:
            self.db.connect().execute("UPDATE jobs SET status = 'pending', worker = NULL, message = ? "
                                         "WHERE id = ?", (message, job_id))
        except sqlite3.IntegrityError:
            self.finish(job_id, False, "interrupted; a newer job for this project is pending")
            return False
        self.wakeup.set()
        return True

    def recover(self) -> int:
        """Jobs left `running` by a dead process go back to `pending` (or fail if one is already pending)."""
        rows = self.db.connect().execute("SELECT id, worker FROM jobs WHERE status = 'running'").fetchall()
        return sum(self.requeue(row["id"], "interrupted; re-queued") for row in rows if not _alive(row["worker"]))

    def jobs(self, project_id: int | None = None, limit: int = 50, before: int | None = None) -> list[dict]:
        """Newest first: at most `limit` jobs (of one project if given) with ids below `before` (a page cursor)."""
        clauses, args = [], []
        if project_id is not None:
            clauses.append("project_id = ?")
            args.append(project_id)
        if before is not None:
            clauses.append("id < ?")
            args.append(before)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self.db.connect().execute(f"SELECT * FROM jobs{where} ORDER BY id DESC LIMIT ?",
                                            (*args, limit)).fetchall()
        return [dict(row) | {"result": json.loads(row["result"])} for row in rows]

    def count(self, project_id: int | None = None) -> int:
        where, args = (" WHERE project_id = ?", (project_id,)) if project_id is not None else ("", ())
        return int(self.db.connect().execute(f"SELECT COUNT(*) FROM jobs{where}", args).fetchone()[0])

    def pending(self) -> list[dict]:
        """Pending jobs, oldest first."""
        rows = self.db.connect().execute("SELECT * FROM jobs WHERE status = 'pending' ORDER BY id").fetchall()
        return [dict(row) for row in rows]

    def summary(self) -> dict:
        rows = self.db.connect().execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        return {row[0]: row[1] for row in rows}

    def last_finished(self, project_id: int, kind: str) -> dict | None:
        row = self.db.connect().execute(
            "SELECT * FROM jobs WHERE project_id = ? AND kind = ? AND status IN ('done', 'failed') "
            "ORDER BY id DESC LIMIT 1", (project_id, kind)).fetchone()
        return dict(row) if row else None


Handler = Callable[[dict, StopFlag], dict]  # (claimed job row, stop flag to check between steps) → result


class JobRunner:
    """A daemon thread that claims and runs jobs with `handlers[kind](job, stop) -> result dict`.

    `stop()` (called at process shutdown) sets the stop flag the running job checks between steps: that job
    goes back to `pending` (its staging is removed by the code that made it) and the thread ends."""

    def __init__(self, queue: JobQueue, handlers: dict[str, Handler], poll_s: float = 2.0):
        self.queue = queue
        self.handlers = handlers
        self.poll_s = poll_s
        self.stopping = StopFlag()
        self._thread = threading.Thread(target=self._loop, name="job-runner", daemon=True)

    def start(self) -> "JobRunner":
        self.queue.recover()
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 20.0) -> None:
        """Ask the running job to stop and wait up to `timeout_s` for the thread to end."""
        self.stopping.set("interrupted by shutdown; re-queued")
        self.queue.wakeup.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def run_once(self, job_id: int | None = None) -> bool:
        """Claim and run one job (the oldest pending one, or `job_id`); False when there was none."""
        job = self.queue.claim(job_id)
        if job is None:
            return False
        handler = self.handlers.get(job["kind"])
        log.info("job %s (%s, project %s) started", job["id"], job["kind"], job["project_id"])
        try:
            if handler is None:
                raise ValueError(f"no handler for job kind {job['kind']!r}")
            result = handler(job, self.stopping)
        except Cancelled as exc:
            log.warning("job %s stopped: %s", job["id"], exc)
            self.queue.requeue(job["id"], str(exc))
        except Exception as exc:  # a failing job must never stop the runner; its status says why
            log.warning("job %s failed: %s", job["id"], exc)
            self.queue.finish(job["id"], False, f"{exc.__class__.__name__}: {exc}")
        else:
            log.info("job %s done: %s", job["id"], result)
            self.queue.finish(job["id"], True, "ok", result)
        return True

    def _loop(self) -> None:
        while not self.stopping.is_set:
            if not self.run_once():
                self.queue.wakeup.wait(self.poll_s)
                self.queue.wakeup.clear()
