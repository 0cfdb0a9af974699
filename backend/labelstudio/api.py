"""Label Studio API calls the background jobs make, with the backend's own token (never trusting webhook bodies)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from backend.labelstudio.client import UNAVAILABLE, LabelStudioConnection, failure_reason, refused

EXPORT_TIMEOUT_S = 120


def export_tasks(connection: LabelStudioConnection, project_id: int, all_tasks: bool = False,
                 ids: Sequence[int] | None = None) -> list[dict]:
    """The project's tasks with their annotations and predictions (Label Studio's JSON export): the annotated
    ones (Label Studio's default), or every task with `all_tasks` (`download_all_tasks=true`); only the tasks of
    `ids` when given (`ids[]`; none for an empty list, which Label Studio would take for every task)."""
    if ids is not None and not ids:
        return []
    params = {"exportType": "JSON", **({"download_all_tasks": "true"} if all_tasks else {}),
              **({"ids[]": [int(i) for i in ids]} if ids is not None else {})}
    response = connection.get(f"/api/projects/{project_id}/export", params=params, timeout=EXPORT_TIMEOUT_S)
    if response.status_code != 200:
        raise refused(response, f"Label Studio export of project {project_id} failed")
    return response.json()


def export_for_review(connection: LabelStudioConnection, project_id: int, all_tasks: bool = True) -> list[dict]:
    """Every task (only the annotated ones without `all_tasks`) with its annotations and full predictions. Label
    Studio's export lists predictions by id only (it expands drafts, not predictions), so the predictions come from
    one `GET /api/predictions?project=N` and replace the ids, per task, in id order (an export that already carries
    prediction objects is kept)."""
    return with_predictions(connection, project_id, export_tasks(connection, project_id, all_tasks=all_tasks))


def with_predictions(connection: LabelStudioConnection, project_id: int, tasks: list[dict]) -> list[dict]:
    """`tasks` of a JSON export with each one's prediction ids replaced by the full predictions (`export_for_review`),
    in place; returned."""
    if all(isinstance(p, dict) for t in tasks for p in t.get("predictions") or []):
        return tasks
    response = connection.get("/api/predictions", params={"project": project_id}, timeout=EXPORT_TIMEOUT_S)
    if response.status_code != 200:
        raise refused(response, f"Label Studio predictions of project {project_id}")
    by_task: dict[int, list[dict]] = {}
    for prediction in response.json():
        if isinstance(prediction, dict) and isinstance(prediction.get("task"), int):
            by_task.setdefault(prediction["task"], []).append(prediction)
    for task in tasks:
        task["predictions"] = sorted(by_task.get(task.get("id"), []), key=lambda p: p.get("id") or 0)
    return tasks


def annotation_count(connection: LabelStudioConnection, project_id: int) -> int:
    """Label Studio's own count of the project's annotations (`total_annotations_number`)."""
    return int(project_settings(connection, project_id).get("total_annotations_number") or 0)


TASK_PAGE_SIZE = 500
VERSIONS_TEXT_LIMIT = 490  # Label Studio cuts `predictions_model_versions` at 500 characters


def list_tasks(connection: LabelStudioConnection, project_id: int, model_version: str) -> list[dict]:
    """Every task of the project, in id order, light: {"id", "data", "total_annotations", "has_version": whether
    one of its predictions carries exactly `model_version`}.

    Two listings: all tasks (without predictions: small pages), and the tasks a Data Manager filter finds with a
    prediction whose model version contains `model_version` (substring: the exact check is made on their
    `predictions_model_versions`, or on the task's predictions when Label Studio cut that text)."""
    tasks = {t["id"]: {"id": int(t["id"]), "data": t.get("data") or {},
                       "total_annotations": int(t.get("total_annotations") or 0), "has_version": False}
             for t in _task_pages(connection, project_id, {"ordering": ["tasks:id"]})}
    contains = {"ordering": ["tasks:id"], "filters": {"conjunction": "and", "items": [{
        "filter": "filter:tasks:predictions_model_versions", "operator": "contains", "type": "List",
        "value": [model_version]}]}}
    for task in _task_pages(connection, project_id, contains):
        if task["id"] not in tasks:
            continue
        text = str(task.get("predictions_model_versions") or "")
        if len(text) < VERSIONS_TEXT_LIMIT:
            found = model_version in {v.strip() for v in text.split(",")}
        else:
            found = any(p.get("model_version") == model_version for p in task_predictions(connection, task["id"]))
        tasks[task["id"]]["has_version"] = found
    return [tasks[task_id] for task_id in sorted(tasks)]


RECENT_PAGE_SIZE = 50


def recently_annotated_ids(connection: LabelStudioConnection, project_id: int, exclude: set[int],
                           limit: int) -> list[int]:
    """Up to `limit` ids of the project's annotated tasks not in `exclude`, the most recently completed first: the
    Data Manager's listing of tasks with an annotation ordered by `completed_at` (newest annotation), read page by page
    only until enough are found, so a large project is not exported to find a few new tasks."""
    query = {"ordering": ["-tasks:completed_at"], "filters": {"conjunction": "and", "items": [{
        "filter": "filter:tasks:total_annotations", "operator": "greater", "type": "Number", "value": 0}]}}
    found: list[int] = []
    if limit <= 0:
        return found
    for task in _task_pages(connection, project_id, query, RECENT_PAGE_SIZE):
        if isinstance(task.get("id"), int) and task["id"] not in exclude and task["id"] not in found:
            found.append(task["id"])
            if len(found) >= limit:
                break
    return found


def _task_pages(connection: LabelStudioConnection, project_id: int, query: dict, page_size: int = TASK_PAGE_SIZE):
    """The project's tasks as the Data Manager lists them for `query` (filters, ordering), page after page."""
    page, seen = 1, 0
    while True:
        response = connection.get("/api/tasks", params={"project": project_id, "page": page,
                                                        "page_size": page_size, "query": json.dumps(query)},
                                  timeout=EXPORT_TIMEOUT_S)
        if response.status_code == 404 and page > 1:  # Label Studio's "Invalid page." after the last one
            return
        if response.status_code != 200:
            raise refused(response, f"Label Studio task list of project {project_id} failed")
        body = response.json()
        batch = body.get("tasks", []) if isinstance(body, dict) else body
        yield from batch
        seen += len(batch)
        total = body.get("total") if isinstance(body, dict) else None
        if not batch or (total is not None and seen >= total):
            return
        page += 1


def task_predictions(connection: LabelStudioConnection, task_id: int) -> list[dict]:
    """The task's predictions ({"id", "model_version", "score", ...}, results included)."""
    response = connection.get("/api/predictions", params={"task": task_id})
    if response.status_code != 200:
        raise refused(response, f"Label Studio predictions of task {task_id}")
    return list(response.json())


def import_predictions(connection: LabelStudioConnection, project_id: int, predictions: list[dict]) -> int:
    """Bulk import ({"task", "result", "score", "model_version"} each); returns how many Label Studio created."""
    if not predictions:
        return 0
    response = connection.post(f"/api/projects/{project_id}/import/predictions", json=predictions,
                               timeout=EXPORT_TIMEOUT_S)
    if response.status_code not in (200, 201):
        raise refused(response, f"Label Studio refused {len(predictions)} predictions for project {project_id}")
    return int(response.json().get("created", len(predictions)))


def delete_prediction(connection: LabelStudioConnection, prediction_id: int) -> None:
    response = connection.request("DELETE", f"/api/predictions/{int(prediction_id)}")
    if response.status_code not in (200, 204, 404):
        raise refused(response, f"Label Studio refused to delete prediction {prediction_id}")


def create_prediction(connection: LabelStudioConnection, prediction: dict) -> tuple[int | None, str]:
    """One prediction through `POST /api/predictions` ({"task", "result", "score", "model_version", "cluster"}: the
    bulk import drops `cluster`). Returns (its id, "") or (None, Label Studio's reason for refusing it); raises
    `LabelStudioUnavailable` when Label Studio answers 502/503/504."""
    response = connection.post("/api/predictions", json=prediction, timeout=EXPORT_TIMEOUT_S)
    if response.status_code in UNAVAILABLE:
        raise refused(response, f"Label Studio could not store the prediction of task {prediction.get('task')}")
    if response.status_code not in (200, 201):
        return None, f"Label Studio refused the prediction: {failure_reason(response)}"
    return int(response.json().get("id") or 0) or None, ""


def project_settings(connection: LabelStudioConnection, project_id: int) -> dict:
    """The project as Label Studio serves it (`GET /api/projects/N`: `model_version`, `sampling`, `title`, …)."""
    response = connection.get(f"/api/projects/{project_id}")
    if response.status_code != 200:
        raise refused(response, f"Label Studio project {project_id}")
    return response.json()


def update_project(connection: LabelStudioConnection, project_id: int, changes: dict) -> None:
    """`PATCH /api/projects/N` with `changes` (e.g. {"model_version": …, "sampling": …})."""
    response = connection.request("PATCH", f"/api/projects/{project_id}", json=changes)
    if response.status_code != 200:
        raise refused(response, f"Label Studio refused to update project {project_id} ({sorted(changes)})")


def model_versions(connection: LabelStudioConnection, project_id: int) -> tuple[list[str], list[dict]]:
    """(model versions the project has predictions of, the ML backends connected to it as {"title", "url",
    "model_version"}: what their `/setup` answered). Label
    Studio accepts a project `model_version` only from predictions' versions and connected models' titles, and sets
    it to a connected model's title at Connect. Read from the model-versions listing, which does not call the
    backends (`GET /api/ml` would call this service's /setup for each)."""
    response = connection.get(f"/api/projects/{project_id}/model-versions",
                              params={"extended": "true", "include_live_models": "true"})
    if response.status_code != 200:
        raise refused(response, f"Label Studio model versions of project {project_id}")
    body = response.json()
    static = [str(v.get("model_version") or "") for v in body.get("static") or [] if isinstance(v, dict)]
    live = [{"title": str(m.get("title") or ""), "url": str(m.get("url") or ""),
             "model_version": str(m.get("model_version") or "")}
            for m in body.get("live") or [] if isinstance(m, dict)]
    return static, live


def project_webhooks(connection: LabelStudioConnection, project_id: int) -> list[dict]:
    """The project's webhooks ({"id", "url", "headers", …})."""
    response = connection.get("/api/webhooks/", params={"project": project_id})
    if response.status_code != 200:
        raise refused(response, f"Label Studio webhooks of project {project_id}")
    return [w for w in response.json() if isinstance(w, dict)]


def update_webhook_headers(connection: LabelStudioConnection, webhook_id: int, headers: dict) -> None:
    """Set the extra headers Label Studio sends with a webhook."""
    response = connection.request("PATCH", f"/api/webhooks/{int(webhook_id)}/", json={"headers": headers})
    if response.status_code != 200:
        raise refused(response, f"Label Studio refused to update webhook {webhook_id}")
