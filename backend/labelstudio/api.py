"""Label Studio API calls the background jobs make, with the backend's own token (never trusting webhook bodies)."""

from __future__ import annotations

from backend.core.errors import BadRequest
from backend.labelstudio.client import LabelStudioConnection

EXPORT_TIMEOUT_S = 120


def export_tasks(connection: LabelStudioConnection, project_id: int) -> list[dict]:
    """Every task of the project with its annotations and predictions (Label Studio's JSON export)."""
    response = connection.get(f"/api/projects/{project_id}/export", params={"exportType": "JSON"},
                              timeout=EXPORT_TIMEOUT_S)
    if response.status_code != 200:
        raise BadRequest(f"Label Studio export of project {project_id} failed: HTTP {response.status_code}")
    return response.json()


def annotation_count(connection: LabelStudioConnection, project_id: int) -> int:
    """Label Studio's own count of the project's annotations (`total_annotations_number`)."""
    response = connection.get(f"/api/projects/{project_id}")
    if response.status_code != 200:
        raise BadRequest(f"Label Studio answered HTTP {response.status_code} for project {project_id}")
    return int(response.json().get("total_annotations_number") or 0)
