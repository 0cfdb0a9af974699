"""The raw (uncalibrated) review-priority score of every prediction this service wrote, per project, task and
model_version: what a project's score calibration is fitted on (Label Studio stores only the calibrated score).
Scores of different `review_score` modes are kept apart (`score_key`): a calibration fits one mode's scale only.
Beside each score of a two-view mode, the regions found on the image's mirror (mapped back to the image: rows
[x1, y1, x2, y2 as fractions of the image's width and height, score, label]): with the regions of the prediction
Label Studio keeps, what a project's learned region model is fitted on (`backend.predictions.region_model`). And the
image's embedding where the predict job computed one (float16 bytes of the embedder's unit row): what a project's
count model is fitted on (`backend.predictions.count_model`)."""

from __future__ import annotations

import json
import time

import numpy as np

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
CREATE TABLE IF NOT EXISTS prediction_embeddings (
    project_id INTEGER NOT NULL,
    task_id INTEGER NOT NULL,
    model_version TEXT NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (project_id, task_id, model_version)
);
CREATE TABLE IF NOT EXISTS prediction_mirrors (
    project_id INTEGER NOT NULL,
    task_id INTEGER NOT NULL,
    model_version TEXT NOT NULL,
    regions TEXT NOT NULL,
    PRIMARY KEY (project_id, task_id, model_version)
);
"""


DEFAULT_MODE = "errors"
LEGACY_MODE = "mirror"  # rows written before modes were kept apart carry the bare model_version


def score_key(model_version: str, mode: str) -> str:
    """The stored key of one model_version's raw scores of one review_score mode."""
    return model_version if mode == LEGACY_MODE else f"{model_version}|{mode}"


class ScoreLog:
    def __init__(self, db: Database):
        self.db = db.ensure(SCHEMA)

    def record(self, project_id: int, model_version: str, scores: dict[int, float], mode: str = DEFAULT_MODE,
               mirrors: dict[int, list] | None = None, embeddings: dict[int, np.ndarray] | None = None) -> None:
        """Store {task id: raw score in [0, 1]} of one model_version and review_score `mode` (a later score of the
        same task replaces it), `mirrors` {task id: mirror region rows (module docstring)} and `embeddings` {task id:
        float32 (D,) image embedding} where given."""
        now, model_version = time.time(), score_key(model_version, mode)
        connection = self.db.connect()
        connection.executemany(
            "INSERT OR REPLACE INTO prediction_scores (project_id, task_id, model_version, raw_score, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [(project_id, int(task), model_version, float(score), now) for task, score in scores.items()])
        connection.executemany(
            "INSERT OR REPLACE INTO prediction_mirrors (project_id, task_id, model_version, regions) "
            "VALUES (?, ?, ?, ?)",
            [(project_id, int(task), model_version, json.dumps(rows)) for task, rows in (mirrors or {}).items()])
        connection.executemany(
            "INSERT OR REPLACE INTO prediction_embeddings (project_id, task_id, model_version, vector) "
            "VALUES (?, ?, ?, ?)",
            [(project_id, int(task), model_version, np.asarray(vector, np.float16).tobytes())
             for task, vector in (embeddings or {}).items()])

    def get(self, project_id: int, model_version: str, task_ids: list[int], mode: str = DEFAULT_MODE
            ) -> dict[int, float]:
        """{task id: raw score} for those of `task_ids` with a recorded score of `model_version` in `mode`."""
        return self._select("prediction_scores", "raw_score", project_id, score_key(model_version, mode), task_ids)

    def get_mirrors(self, project_id: int, model_version: str, task_ids: list[int], mode: str = DEFAULT_MODE
                    ) -> dict[int, list]:
        """{task id: mirror region rows} for those of `task_ids` that have them for `model_version` in `mode`."""
        stored = self._select("prediction_mirrors", "regions", project_id, score_key(model_version, mode), task_ids)
        out = {}
        for task, regions in stored.items():
            try:
                out[task] = json.loads(regions)
            except (TypeError, ValueError):  # a damaged row costs only its task
                continue
        return out

    def get_embeddings(self, project_id: int, model_version: str, task_ids: list[int], mode: str = DEFAULT_MODE
                       ) -> dict[int, np.ndarray]:
        """{task id: float32 (D,) image embedding} for those of `task_ids` that have one for `model_version`."""
        stored = self._select("prediction_embeddings", "vector", project_id, score_key(model_version, mode), task_ids)
        return {task: np.frombuffer(vector, np.float16).astype(np.float32) for task, vector in stored.items()
                if isinstance(vector, bytes) and vector and len(vector) % 2 == 0}

    def _select(self, table: str, column: str, project_id: int, key: str, task_ids: list[int]) -> dict[int, object]:
        """{task id: `column`} of the rows of `table` for the project, stored key and those of `task_ids` present."""
        out = {}
        for start in range(0, len(task_ids), 500):
            chunk = [int(t) for t in task_ids[start:start + 500]]
            rows = self.db.connect().execute(
                f"SELECT task_id, {column} FROM {table} WHERE project_id = ? AND model_version = ? "
                f"AND task_id IN ({','.join('?' * len(chunk))})", (project_id, key, *chunk)).fetchall()
            out.update({row["task_id"]: row[column] for row in rows})
        return out
