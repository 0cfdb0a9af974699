"""Per-project state: the label config and extra params as Label Studio sent them to `/setup`, what the serving
pipeline can pre-label (`coverage`), and the Label Studio project settings this service set (`managed`: it only
ever changes a setting again while it still holds the value it set, see `backend.jobs.project_setup`)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from backend.core.errors import ProjectNotSetUp
from backend.store.database import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    project_id INTEGER PRIMARY KEY,
    extra_params TEXT NOT NULL DEFAULT '{}',
    label_config TEXT NOT NULL DEFAULT '',
    updated_at REAL NOT NULL
);
"""
COLUMNS = (("coverage", "TEXT NOT NULL DEFAULT '{}'"), ("managed", "TEXT NOT NULL DEFAULT '{}'"))


@dataclass(frozen=True)
class StoredProject:
    """coverage: `backend.pipelines.coverage.Coverage.as_dict()` of the last check ({} before one);
    managed: {setting: value} this service last wrote into the Label Studio project."""

    project_id: int
    extra_params: dict
    label_config: str
    updated_at: float = 0.0
    coverage: dict = field(default_factory=dict)
    managed: dict = field(default_factory=dict)


class ProjectStore:
    def __init__(self, db: Database):
        self.db = db.ensure(SCHEMA).ensure_columns("projects", COLUMNS)

    def save(self, project_id: int, extra_params: dict, label_config: str) -> bool:
        """Store what `/setup` sent; returns whether it is new (first setup, or another config or extra params)."""
        before = self.get(project_id)
        changed = before is None or before.extra_params != extra_params or before.label_config != label_config
        self.db.connect().execute(
            "INSERT INTO projects (project_id, extra_params, label_config, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(project_id) DO UPDATE SET extra_params=excluded.extra_params, "
            "label_config=excluded.label_config, updated_at=excluded.updated_at",
            (project_id, json.dumps(extra_params), label_config, time.time()),
        )
        return changed

    def get(self, project_id: int | None) -> StoredProject | None:
        """The project as last set up, or None (also for `project_id` None)."""
        if project_id is None:
            return None
        row = self.db.connect().execute("SELECT * FROM projects WHERE project_id = ?", (project_id,)).fetchone()
        return _stored(row) if row is not None else None

    def set_up(self, project_id: int) -> StoredProject:
        """The project as last set up, with its label config; `ProjectNotSetUp` (404) when there is none: the one
        check every route and job makes."""
        stored = self.get(project_id)
        if stored is None or not stored.label_config:
            raise ProjectNotSetUp(project_id)
        return stored

    def recent(self, limit: int = 20) -> list[StoredProject]:
        """The projects set up most recently, newest first."""
        rows = self.db.connect().execute("SELECT * FROM projects ORDER BY updated_at DESC LIMIT ?", (limit,))
        return [_stored(row) for row in rows.fetchall()]

    def set_coverage(self, project_id: int, coverage: dict) -> None:
        self.db.connect().execute("UPDATE projects SET coverage = ? WHERE project_id = ?",
                                  (json.dumps(coverage), project_id))

    def merge_managed(self, project_id: int, changes: dict) -> None:
        """Add `changes` to the project's `managed` settings in one transaction (several processes sync at once:
        none may drop what another wrote)."""
        with self.db.transaction() as db:
            row = db.execute("SELECT managed FROM projects WHERE project_id = ?", (project_id,)).fetchone()
            if row is not None:
                managed = {**json.loads(row["managed"] or "{}"), **changes}
                db.execute("UPDATE projects SET managed = ? WHERE project_id = ?", (json.dumps(managed), project_id))


def _stored(row) -> StoredProject:
    return StoredProject(row["project_id"], json.loads(row["extra_params"]), row["label_config"], row["updated_at"],
                         json.loads(row["coverage"] or "{}"), json.loads(row["managed"] or "{}"))
