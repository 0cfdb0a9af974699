"""SQLite state shared by every worker process: project settings from `/setup` and webhook events.

The file lives under `MODEL_DIR` (`backend.sqlite`) so it survives restarts. WAL mode lets several
gunicorn workers write; every write is a short transaction.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

MAX_EVENTS = 100_000  # webhook events kept (oldest dropped): the table never grows without bound
PRUNE_EVERY = 1000  # inserts between two pruning passes

SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    project_id INTEGER PRIMARY KEY,
    extra_params TEXT NOT NULL DEFAULT '{}',
    label_config TEXT NOT NULL DEFAULT '',
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER,
    action TEXT NOT NULL,
    annotation_id INTEGER,
    task_id INTEGER,
    received_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_project ON events (project_id, id);
"""


class StateStore:
    """Thread-safe access to the SQLite file (one connection per thread)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self.connect() as db:
            db.executescript(SCHEMA)

    def connect(self) -> sqlite3.Connection:
        """This thread's connection (autocommit; WAL)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.row_factory = sqlite3.Row
            self._local.db = db
        return db

    # -- projects ----------------------------------------------------------------------------------

    def save_project(self, project_id: int, extra_params: dict, label_config: str) -> None:
        self.connect().execute(
            "INSERT INTO projects (project_id, extra_params, label_config, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(project_id) DO UPDATE SET extra_params=excluded.extra_params, "
            "label_config=excluded.label_config, updated_at=excluded.updated_at",
            (project_id, json.dumps(extra_params), label_config, time.time()),
        )

    def project(self, project_id: int) -> dict | None:
        row = self.connect().execute("SELECT * FROM projects WHERE project_id = ?", (project_id,)).fetchone()
        if row is None:
            return None
        return {"project_id": row["project_id"], "extra_params": json.loads(row["extra_params"]),
                "label_config": row["label_config"]}

    # -- events ------------------------------------------------------------------------------------

    def record_event(self, action: str, project_id: int | None, annotation_id: int | None = None,
                     task_id: int | None = None) -> int:
        db = self.connect()
        cursor = db.execute(
            "INSERT INTO events (project_id, action, annotation_id, task_id, received_at) VALUES (?, ?, ?, ?, ?)",
            (project_id, action, annotation_id, task_id, time.time()),
        )
        event_id = int(cursor.lastrowid)
        if event_id % PRUNE_EVERY == 0:
            db.execute("DELETE FROM events WHERE id <= ?", (event_id - MAX_EVENTS,))
        return event_id

    def count_events(self, project_id: int, actions: tuple[str, ...], since: float | None = None) -> int:
        marks = ",".join("?" * len(actions))
        query = f"SELECT COUNT(*) FROM events WHERE project_id = ? AND action IN ({marks}) AND received_at > ?"
        return int(self.connect().execute(query, (project_id, *actions, since or 0.0)).fetchone()[0])

    def events(self, project_id: int | None = None, limit: int = 100) -> list[dict]:
        query = "SELECT * FROM events"
        args: tuple = ()
        if project_id is not None:
            query += " WHERE project_id = ?"
            args = (project_id,)
        rows = self.connect().execute(query + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [dict(row) for row in rows]
