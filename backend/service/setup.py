"""`POST /setup`: Label Studio connects a project. The label config and extra params are validated (a 400 names
what is wrong), stored per project in the state file, and the answer names the model version that will serve."""

from __future__ import annotations

from backend.core.errors import ModelUnavailable
from backend.core.params import ProjectParams
from backend.labelstudio.config import parse_label_config
from backend.service.inputs import parse_json_object, parse_project_id
from backend.service.runtime import Runtime


def handle_setup(runtime: Runtime, body: dict, authenticated: bool) -> dict:
    """`authenticated`: the caller passed basic auth (then a `hostname` may name Label Studio, see
    `LabelStudioConnection.update_from_setup`)."""
    project_id = parse_project_id(body.get("project"))
    extra = body.get("extra_params")
    if isinstance(extra, str):
        extra = parse_json_object(extra, "extra_params") if extra.strip() else None
    params = ProjectParams.from_extra(extra)
    schema = body.get("schema") or ""
    ontology = parse_label_config(schema, params.predict)  # reject unsupported configs at connection time
    runtime.connection.update_from_setup(body.get("hostname"), body.get("access_token"), trusted=authenticated)
    if project_id is not None:
        runtime.projects.save(project_id, extra or {}, schema)
    try:
        model_version = runtime.selector.for_project(project_id, params.predict, ontology).model_version
    except ModelUnavailable:  # PIPELINE=trained before the first training: connect, predict later
        model_version = f"project{project_id}-detector-untrained"
    return {"model_version": model_version}
