"""The raw (uncalibrated) review-priority score of every prediction this service wrote, per project, task and
model_version: what a project's score calibration is fitted on (Label Studio stores only the calibrated score)."""

from __future__ import annotations

import time

from backend.store.database import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS prediction_scores (
    project_id INTEGER NOT NULL,
    task_id INTEGER NOT NULL,
    model_version TEXT NOT NULL,
    raw_score REAL NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (project_id, task_id, model_version)
);
"""


class ScoreLog:
    def __init__(self, db: Database):
        self.db = db.ensure(SCHEMA)

    def record(self, project_id: int, model_version: str, scores: dict[int, float]) -> None:
        """Store {task id: raw score in [0, 1]} of one model_version (a later score of the same task replaces it)."""
        now = time.time()
        self.db.connect().executemany(
            "INSERT OR REPLACE INTO prediction_scores (project_id, task_id, model_version, raw_score, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [(project_id, int(task), model_version, float(score), now) for task, score in scores.items()])

    def get(self, project_id: int, model_version: str, task_ids: list[int]) -> dict[int, float]:
        """{task id: raw score} for those of `task_ids` with a recorded score of `model_version`."""
        out = {}
        for start in range(0, len(task_ids), 500):
            chunk = [int(t) for t in task_ids[start:start + 500]]
            rows = self.db.connect().execute(
                f"SELECT task_id, raw_score FROM prediction_scores WHERE project_id = ? AND model_version = ? "
                f"AND task_id IN ({','.join('?' * len(chunk))})", (project_id, model_version, *chunk)).fetchall()
            out.update({row["task_id"]: row["raw_score"] for row in rows})
        return out
