"""Webhook events as received (action and ids only), newest `MAX_EVENTS` kept."""

from __future__ import annotations

import time

from backend.store.database import Database

MAX_EVENTS = 100_000  # webhook events kept (oldest dropped): the table never grows without bound
PRUNE_EVERY = 1000  # inserts between two pruning passes

SCHEMA = """
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


class EventLog:
    def __init__(self, db: Database):
        self.db = db.ensure(SCHEMA)

    def record(self, action: str, project_id: int | None, annotation_id: int | None = None,
               task_id: int | None = None) -> int:
        """Store one event; returns its id (every `PRUNE_EVERY` ids, events beyond `MAX_EVENTS` are dropped)."""
        db = self.db.connect()
        cursor = db.execute(
            "INSERT INTO events (project_id, action, annotation_id, task_id, received_at) VALUES (?, ?, ?, ?, ?)",
            (project_id, action, annotation_id, task_id, time.time()),
        )
        event_id = int(cursor.lastrowid)
        if event_id % PRUNE_EVERY == 0:
            db.execute("DELETE FROM events WHERE id <= ?", (event_id - MAX_EVENTS,))
        return event_id

    def count(self, project_id: int, actions: tuple[str, ...], since: float | None = None) -> int:
        """Events of `actions` for the project received after `since` (epoch seconds; all when None)."""
        marks = ",".join("?" * len(actions))
        query = f"SELECT COUNT(*) FROM events WHERE project_id = ? AND action IN ({marks}) AND received_at > ?"
        return int(self.db.connect().execute(query, (project_id, *actions, since or 0.0)).fetchone()[0])

    def recent(self, project_id: int | None = None, limit: int = 100) -> list[dict]:
        """Newest first, at most `limit` (of one project when given)."""
        query, args = "SELECT * FROM events", ()
        if project_id is not None:
            query, args = query + " WHERE project_id = ?", (project_id,)
        rows = self.db.connect().execute(query + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [dict(row) for row in rows]
