"""`GET /versions` (model versions Label Studio can pick; a project's trained versions) and
`POST /versions/activate` (make an earlier or later trained version the served one: rollback)."""

from __future__ import annotations

import re

from backend.core.errors import BadRequest
from backend.registry.versions import TRAINED_KINDS
from backend.service.inputs import MAX_ID, parse_project_id, query_int
from backend.service.runtime import Runtime

VERSION_NAME = re.compile(r"v[0-9]{4,9}")  # fullmatch: no trailing newline, ASCII digits only


def list_versions(runtime: Runtime, args) -> dict:
    """{"versions": every model_version, "model_version": the default pipeline's, "trained": the project's trained
    versions with kind, metrics and, for detectors, each label's source with its held-out evidence (with
    `?project=N`), "active": the active version per kind}."""
    names = [p.model_version for p in runtime.context.selector.pipelines.values()]
    project = query_int(args, "project", None, 1, MAX_ID)
    trained, active = [], {}
    for kind in TRAINED_KINDS if project is not None else ():
        current = runtime.context.registry.active(project, kind)
        active[kind] = current.name if current else None
        trained += [{"kind": kind, "version": v.name, "model_version": v.model_version, "metrics": v.metrics,
                     "active": v.name == active[kind],
                     **({"sources": {label: {"source": source, "why": v.source_evidence().get(label)}
                                     for label, source in v.metrics["sources"].items()}}
                        if v.metrics.get("sources") else {})}
                    for v in runtime.context.registry.versions(project, kind)]
    return {"versions": names + [v["model_version"] for v in trained],
            "model_version": runtime.context.selector.pipeline().model_version, "trained": trained, "active": active}


def activate_version(runtime: Runtime, body: dict) -> dict:
    """{"project", "version", "kind"?}: `kind` may be left out when the project has trained versions of one
    kind only."""
    project = parse_project_id(body.get("project"), required=True)
    kinds = [k for k in TRAINED_KINDS if runtime.context.registry.versions(project, k)]
    kind = body.get("kind") or (kinds[0] if len(kinds) == 1 else None)
    if kind not in TRAINED_KINDS:
        raise BadRequest(f"'kind' must be one of {TRAINED_KINDS} (project {project} has versions of {kinds})")
    name = body.get("version")
    if not isinstance(name, str) or not VERSION_NAME.fullmatch(name):
        raise BadRequest(f"'version' must be a version name such as 'v0001', got {str(name)[:60]!r}")
    try:
        version = runtime.context.registry.activate(project, kind, name)
    except KeyError as exc:
        raise BadRequest(f"cannot activate: {exc.args[0]}") from None
    # unlabelled tasks get this version's labels
    queued = runtime.context.request_predictions(project, "VERSION_ACTIVATED")
    return {"kind": kind, "active": version.name, "model_version": version.model_version,
            "predict_job": queued[0] if queued else None}
