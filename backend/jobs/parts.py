"""The parts of a background prediction job: its tasks split into units of work that any worker can claim (RQ
workers in parallel with `REDIS_URL`, else the job's own process one after the other). Each part records its
progress as it goes, which doubles as a heartbeat: a running part whose worker died (or went silent for
`STALE_S`) is claimed again, and the code that runs it skips the tasks that already got their prediction.
"""

from __future__ import annotations

import json
import sqlite3
import time

from backend.jobs.queue import worker_alive, worker_id
from backend.store.database import Database

STALE_S = 600.0  # a running part without progress for this long is taken over

SCHEMA = """
CREATE TABLE IF NOT EXISTS job_parts (
    job_id INTEGER NOT NULL,
    part INTEGER NOT NULL,
    tasks TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    worker TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0,
    images INTEGER NOT NULL DEFAULT 0,
    seconds REAL NOT NULL DEFAULT 0,
    failed TEXT NOT NULL DEFAULT '[]',
    updated_at REAL NOT NULL,
    PRIMARY KEY (job_id, part)
);
"""


class JobParts:
    def __init__(self, db: Database):
        self.db = db.ensure(SCHEMA)

    def plan(self, job_id: int, parts: list[list[dict]]) -> int:
        """Store the job's parts (each a list of tasks {"id", "data"}); returns how many."""
        now = time.time()
        rows = [(job_id, i, json.dumps(tasks), now) for i, tasks in enumerate(parts)]
        self.db.connect().executemany("INSERT INTO job_parts (job_id, part, tasks, updated_at) VALUES (?, ?, ?, ?)",
                                      rows)
        return len(rows)

    def exists(self, job_id: int) -> bool:
        return self.db.connect().execute("SELECT 1 FROM job_parts WHERE job_id = ? LIMIT 1",
                                         (job_id,)).fetchone() is not None

    def claim(self, job_id: int, part: int | None = None) -> dict | None:
        """Atomically take a part (the first pending one, or `part`) for this process: pending, or running in a
        dead or silent worker. Returns {"part", "tasks", "attempts", "done", "failed", ...} or None."""
        with self.db.transaction() as db:
            where, args = ("AND part = ?", (job_id, part)) if part is not None else ("", (job_id,))
            rows = db.execute(f"SELECT * FROM job_parts WHERE job_id = ? {where} AND status IN ('pending', 'running') "
                              "ORDER BY part", args).fetchall()
            row = next((r for r in rows if r["status"] == "pending" or self._abandoned(r)), None)
            if row is not None:
                db.execute("UPDATE job_parts SET status = 'running', worker = ?, attempts = attempts + 1, "
                           "updated_at = ? WHERE job_id = ? AND part = ?", (worker_id(), time.time(), job_id, row["part"]))
        return None if row is None else _decoded(row) | {"attempts": row["attempts"] + 1}

    @staticmethod
    def _abandoned(row: sqlite3.Row) -> bool:
        return row["status"] == "running" and (not worker_alive(row["worker"]) or time.time() - row["updated_at"] > STALE_S)

    def progress(self, job_id: int, part: int, done: int, images: int, seconds: float, failed: list[dict]) -> None:
        """The part's totals so far (also its heartbeat)."""
        self.db.connect().execute(
            "UPDATE job_parts SET done = ?, images = ?, seconds = ?, failed = ?, updated_at = ? "
            "WHERE job_id = ? AND part = ?", (done, images, seconds, json.dumps(failed), time.time(), job_id, part))

    def finish(self, job_id: int, part: int, status: str = "done") -> None:
        """End a part: "done", "cancelled", or "pending" again (its worker stops; another claims it later). The
        part keeps the name of the worker that ran it last."""
        self.db.connect().execute("UPDATE job_parts SET status = ?, updated_at = ? WHERE job_id = ? AND part = ?",
                                  (status, time.time(), job_id, part))

    def cancel_pending(self, job_id: int) -> None:
        self.db.connect().execute("UPDATE job_parts SET status = 'cancelled' WHERE job_id = ? AND status = 'pending'",
                                  (job_id,))

    def pending_parts(self, job_id: int) -> list[int]:
        rows = self.db.connect().execute("SELECT part FROM job_parts WHERE job_id = ? AND status = 'pending' "
                                         "ORDER BY part", (job_id,)).fetchall()
        return [row["part"] for row in rows]

    def summary(self, job_id: int) -> dict:
        """Totals over the job's parts: parts by status, tasks, done, images, seconds (summed over parts), failed
        tasks [{"task", "reason"}], workers (how many parts each worker ran)."""
        rows = self.db.connect().execute("SELECT * FROM job_parts WHERE job_id = ?", (job_id,)).fetchall()
        parts = [_decoded(row) for row in rows]
        statuses: dict[str, int] = {}
        for part in parts:
            statuses[part["status"]] = statuses.get(part["status"], 0) + 1
        return {"parts": statuses, "tasks": sum(len(p["tasks"]) for p in parts),
                "done": sum(p["done"] for p in parts), "images": sum(p["images"] for p in parts),
                "seconds": round(sum(p["seconds"] for p in parts), 2),
                "failed": [f for p in parts for f in p["failed"]],
                "workers": {w: sum(p["worker"] == w for p in parts) for w in {p["worker"] for p in parts} if w}}


def _decoded(row: sqlite3.Row) -> dict:
    part = dict(row)
    part["tasks"] = json.loads(part["tasks"])
    part["failed"] = json.loads(part["failed"])
    return part
