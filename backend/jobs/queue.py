"""Background jobs in the SQLite state file: at most one pending job per (project, kind), claimed atomically,
and re-run after a crash (the runner is `backend.jobs.runner`).

A burst of webhook events coalesces into one pending row (a partial unique index enforces it; the options of a
request that finds a pending job are merged into it). A job left `running` by a process that no longer exists
goes back to `pending` when a worker starts. Statuses: pending → running → done | failed | skipped | cancelled
(`backend.jobs.outcome` decides between done, failed and skipped).
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

from backend.store.database import Database

log = logging.getLogger(__name__)

PREDICT_JOB, TRAIN_JOB, REVIEW_JOB = "predict", "train", "review"  # the job kinds (`JobContext.handlers`)
JOB_KINDS = (PREDICT_JOB, TRAIN_JOB, REVIEW_JOB)

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
# columns added after the first release: (name, definition), added to older state files at start
COLUMNS = (("options", "TEXT NOT NULL DEFAULT '{}'"), ("progress", "TEXT NOT NULL DEFAULT '{}'"),
           ("cancel_requested", "INTEGER NOT NULL DEFAULT 0"), ("crashes", "INTEGER NOT NULL DEFAULT 0"))
MAX_CRASHES = 3  # a job whose process died this many times while running it is failed, not retried
KEEP_FINISHED = 5_000  # finished jobs kept in the table (older ones, and their parts, are deleted)
KEEP_ITEMS = 1_000  # requested task ids and failures a finished job keeps (with their counts)
PRUNE_EVERY_S = 600.0  # how often a runner (or the RQ handoff thread) deletes old finished jobs
FINISHED = ("done", "failed", "skipped", "cancelled")
Merge = Callable[[dict, dict], dict]  # (pending job's options, new request's options) → options of the one job


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_alive(worker: str | None) -> bool:
    """Whether the process named "host:pid" still runs (True for other hosts: it cannot be told from here)."""
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
        self.db = db.ensure(SCHEMA).ensure_columns("jobs", COLUMNS)
        self._work = threading.Condition()

    def enqueue(self, project_id: int, kind: str, trigger: str, options: dict | None = None,
                merge: Merge | None = None) -> tuple[int, bool]:
        """(job id, created): a new pending job, or the project's already pending one (coalesced; with `merge`
        its options become `merge(pending options, options)`)."""
        with self.db.transaction() as db:
            cursor = db.execute("INSERT OR IGNORE INTO jobs (project_id, kind, status, trigger, created_at, options) "
                                "VALUES (?, ?, 'pending', ?, ?, ?)",
                                (project_id, kind, trigger, time.time(), json.dumps(options or {})))
            created = cursor.rowcount == 1
            if created:
                job_id = cursor.lastrowid
            else:
                row = db.execute("SELECT id, options FROM jobs WHERE project_id = ? AND kind = ? AND "
                                 "status = 'pending'", (project_id, kind)).fetchone()
                job_id = row["id"]
                if merge is not None:
                    merged = merge(json.loads(row["options"]), options or {})
                    db.execute("UPDATE jobs SET options = ? WHERE id = ?", (json.dumps(merged), job_id))
        if created:
            self.notify()
        return int(job_id), created

    def prune(self, keep: int = KEEP_FINISHED) -> int:
        """Delete the finished jobs older than the newest `keep` (and their parts); returns how many."""
        db = self.db.connect()
        row = db.execute("SELECT id FROM jobs WHERE status IN ('done', 'failed', 'skipped', 'cancelled') "
                         "ORDER BY id DESC LIMIT 1 OFFSET ?", (keep,)).fetchone()
        if row is None:
            return 0
        cursor = db.execute("DELETE FROM jobs WHERE id <= ? AND status IN ('done', 'failed', 'skipped', 'cancelled')",
                            (row["id"],))
        try:
            db.execute("DELETE FROM job_parts WHERE job_id NOT IN (SELECT id FROM jobs)")
        except sqlite3.OperationalError:  # no parts table in this state file
            pass
        return cursor.rowcount

    def notify(self) -> None:
        """Wake every runner thread waiting in `wait_for_work` (a job became pending)."""
        with self._work:
            self._work.notify_all()

    def wait_for_work(self, timeout_s: float) -> None:
        """Block until `notify` or `timeout_s` (runner threads poll the table in any case)."""
        with self._work:
            self._work.wait(timeout_s)

    def claim(self, job_id: int | None = None, kinds: tuple[str, ...] | None = None) -> dict | None:
        """Atomically move the oldest pending job (or job `job_id`, if still pending; of `kinds` when given) to
        `running` for this process; None when there is nothing to claim. A job waits while its project runs a job
        of the same kind."""
        with self.db.transaction() as db:
            where, args = ("id = ? AND", (job_id,)) if job_id is not None else ("", ())
            if kinds:
                where += f" kind IN ({', '.join('?' * len(kinds))}) AND"
                args = (*args, *kinds)
            row = db.execute(f"SELECT * FROM jobs AS j WHERE {where} status = 'pending' AND NOT EXISTS (SELECT 1 FROM "
                             "jobs AS r WHERE r.project_id = j.project_id AND r.kind = j.kind AND r.status = 'running') "
                             "ORDER BY id LIMIT 1", args).fetchone()
            if row is None:
                return None
            db.execute("UPDATE jobs SET status = 'running', worker = ?, started_at = ?, attempts = attempts + 1, "
                       "progress = '{}' WHERE id = ?", (worker_id(), time.time(), row["id"]))
        return _decoded(row) | {"status": "running", "attempts": row["attempts"] + 1}

    def finish(self, job_id: int, status: str, message: str, result: dict | None = None) -> None:
        """End a job as `status` (done, failed, skipped or cancelled) with a message and a result; the finished row
        keeps at most `KEEP_ITEMS` requested task ids and failures (with their counts)."""
        assert status in FINISHED, status
        row = self.db.connect().execute("SELECT options FROM jobs WHERE id = ?", (job_id,)).fetchone()
        job = compact({"options": json.loads(row["options"] or "{}") if row else {}, "result": result or {}},
                      KEEP_ITEMS)
        self.db.connect().execute(
            "UPDATE jobs SET status = ?, finished_at = ?, message = ?, result = ?, options = ?, cancel_requested = 0 "
            "WHERE id = ?",
            (status, time.time(), message[:2000], json.dumps(job["result"]), json.dumps(job["options"]), job_id))
        self.notify()  # a job of the same project and kind may have waited for this one

    def set_progress(self, job_id: int, progress: dict) -> None:
        """The running job's progress (shown by `GET /jobs` and `/health`)."""
        self.db.connect().execute("UPDATE jobs SET progress = ? WHERE id = ?", (json.dumps(progress), job_id))

    def set_plan(self, job_id: int, plan: dict) -> None:
        """What a running job decided at its start (kept in `result` as {"plan": ...} until it finishes, so a job
        run again after a crash finds it)."""
        self.db.connect().execute("UPDATE jobs SET result = ? WHERE id = ?", (json.dumps({"plan": plan}), job_id))

    def request_cancel(self, job_id: int) -> str | None:
        """A pending job is cancelled at once; a running one is asked to stop (it checks between steps). Returns
        the job's status afterwards ("cancelled", "cancelling", or its finished status), None for unknown ids."""
        db = self.db.connect()
        cancelled = db.execute("UPDATE jobs SET status = 'cancelled', finished_at = ?, message = 'cancelled before it "
                               "started' WHERE id = ? AND status = 'pending'", (time.time(), job_id)).rowcount
        if cancelled:
            row = db.execute("SELECT options FROM jobs WHERE id = ?", (job_id,)).fetchone()
            options = compact({"options": json.loads(row["options"] or "{}")}, KEEP_ITEMS)["options"]
            db.execute("UPDATE jobs SET options = ? WHERE id = ?", (json.dumps(options), job_id))
            self.notify()
        db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND status = 'running'", (job_id,))
        row = db.execute("SELECT status, cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            return None
        return "cancelling" if row["status"] == "running" and row["cancel_requested"] else row["status"]

    def cancel_requested(self, job_id: int) -> bool:
        row = self.db.connect().execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return bool(row and row["cancel_requested"])

    def get(self, job_id: int) -> dict | None:
        row = self.db.connect().execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _decoded(row) if row else None

    def requeue(self, job_id: int, message: str) -> bool:
        """A running job back to `pending` (it runs again from the start); if the project already has a pending
        job of that kind, this one fails instead. Returns whether it was re-queued."""
        try:
            self.db.connect().execute("UPDATE jobs SET status = 'pending', worker = NULL, message = ? "
                                         "WHERE id = ?", (message, job_id))
        except sqlite3.IntegrityError:
            self.finish(job_id, "failed", "interrupted; a newer job for this project is pending")
            return False
        self.notify()
        return True

    def recover(self) -> int:
        """Jobs left `running` by a dead process go back to `pending` (or fail if one is already pending); a job
        whose process died `MAX_CRASHES` times (e.g. killed for memory each time) fails instead of being tried
        again (a crash loop otherwise). Returns how many were re-queued."""
        db = self.db.connect()
        rows = db.execute("SELECT id, worker, crashes FROM jobs WHERE status = 'running'").fetchall()
        requeued = 0
        for row in rows:
            if worker_alive(row["worker"]):
                continue
            crashes = row["crashes"] + 1
            db.execute("UPDATE jobs SET crashes = ? WHERE id = ?", (crashes, row["id"]))
            if crashes >= MAX_CRASHES:
                self.finish(row["id"], "failed", f"the process running this job died {crashes} times (killed for "
                                                 "memory? see the worker's log); not tried again")
                continue
            requeued += self.requeue(row["id"], f"interrupted ({crashes} of {MAX_CRASHES} crashes); re-queued")
        return requeued

    def jobs(self, project_id: int | None = None, limit: int = 50, before: int | None = None,
             kind: str | None = None) -> list[dict]:
        """Newest first: at most `limit` jobs (of one project, of one kind, if given) with ids below `before` (a page
        cursor)."""
        clauses, args = [], []
        if project_id is not None:
            clauses.append("project_id = ?")
            args.append(project_id)
        if kind is not None:
            clauses.append("kind = ?")
            args.append(kind)
        if before is not None:
            clauses.append("id < ?")
            args.append(before)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self.db.connect().execute(f"SELECT * FROM jobs{where} ORDER BY id DESC LIMIT ?",
                                            (*args, limit)).fetchall()
        return [_decoded(row) for row in rows]

    def count(self, project_id: int | None = None) -> int:
        where, args = (" WHERE project_id = ?", (project_id,)) if project_id is not None else ("", ())
        return int(self.db.connect().execute(f"SELECT COUNT(*) FROM jobs{where}", args).fetchone()[0])

    def pending(self) -> list[dict]:
        """Pending jobs, oldest first."""
        rows = self.db.connect().execute("SELECT * FROM jobs WHERE status = 'pending' ORDER BY id").fetchall()
        return [_decoded(row) for row in rows]

    def running(self) -> list[dict]:
        rows = self.db.connect().execute("SELECT * FROM jobs WHERE status = 'running' ORDER BY id").fetchall()
        return [_decoded(row) for row in rows]

    def summary(self) -> dict:
        rows = self.db.connect().execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        return {row[0]: row[1] for row in rows}

    def last_finished(self, project_id: int, kind: str) -> dict | None:
        row = self.db.connect().execute(
            "SELECT * FROM jobs WHERE project_id = ? AND kind = ? AND status IN ('done', 'failed', 'skipped', 'cancelled') "
            "ORDER BY id DESC LIMIT 1", (project_id, kind)).fetchone()
        return _decoded(row) if row else None


def compact(job: dict, keep: int) -> dict:
    """`job` with its long lists (requested task ids, failed tasks) cut to their first `keep`, a `<list>_count`
    beside each; returns it (changed in place)."""
    for holder, key in ((job.get("options") or {}, "tasks"), (job.get("result") or {}, "failed")):
        items = holder.get(key)
        if isinstance(items, list) and len(items) > keep:
            holder[f"{key}_count"] = len(items)
            holder[key] = items[:keep]
    return job


def _decoded(row: sqlite3.Row) -> dict:
    """A job row with its JSON columns decoded."""
    job = dict(row)
    for key in ("result", "options", "progress"):
        if key in job:
            job[key] = json.loads(job[key] or "{}")
    return job
