"""Per-project settings as Label Studio sent them to `/setup`: the label config and the extra params."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from backend.store.database import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    project_id INTEGER PRIMARY KEY,
    extra_params TEXT NOT NULL DEFAULT '{}',
    label_config TEXT NOT NULL DEFAULT '',
    updated_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class StoredProject:
    project_id: int
    extra_params: dict
    label_config: str


class ProjectStore:
    def __init__(self, db: Database):
        self.db = db.ensure(SCHEMA)

    def save(self, project_id: int, extra_params: dict, label_config: str) -> None:
        self.db.connect().execute(
            "INSERT INTO projects (project_id, extra_params, label_config, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(project_id) DO UPDATE SET extra_params=excluded.extra_params, "
            "label_config=excluded.label_config, updated_at=excluded.updated_at",
            (project_id, json.dumps(extra_params), label_config, time.time()),
        )

    def get(self, project_id: int | None) -> StoredProject | None:
        """The project as last set up, or None (also for `project_id` None)."""
        if project_id is None:
            return None
        row = self.db.connect().execute("SELECT * FROM projects WHERE project_id = ?", (project_id,)).fetchone()
        if row is None:
            return None
        return StoredProject(row["project_id"], json.loads(row["extra_params"]), row["label_config"])
