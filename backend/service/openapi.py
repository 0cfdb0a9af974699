"""The OpenAPI 3.0 description the service serves at `GET /openapi.json` (what the routes accept and answer).

It documents the protocol for people and drives the schema-based fuzz test (`tests/test_fuzz.py`), which
sends generated requests to every operation listed here and fails on any 5xx other than a deliberate 503.
"""

from __future__ import annotations

_ID = {"type": "integer", "minimum": 1}
_PROJECT = {"oneOf": [_ID, {"type": "string", "example": "7.1700000000"}],
            "description": "project id, or Label Studio's '<id>.<timestamp>'"}
_ERROR = {"description": "a message naming what is wrong",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_JSON_OK = {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}
_HTML = {"content": {"text/html": {"schema": {"type": "string"}}}}
_REVIEW_PROJECT = [{"name": "project", "in": "query", "required": True, "schema": _PROJECT["oneOf"][0],
                    "description": "Label Studio project id (the project must be set up: 404 otherwise)"}]
EXAMPLE_CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
                  '<Label value="cat"/></RectangleLabels></View>')


def _body(schema: dict) -> dict:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _query(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _operation(summary: str, body: dict | None = None, parameters: list | None = None,
               extra: dict | None = None) -> dict:
    responses = {"200": _JSON_OK, "400": _ERROR, "401": _ERROR, **(extra or {})}
    operation = {"summary": summary, "responses": responses}
    if body is not None:
        operation["requestBody"] = _body(body)
        responses["413"] = _ERROR
    if parameters:
        operation["parameters"] = parameters
    return operation


SPEC = {
    "openapi": "3.0.3",
    "info": {"title": "Label Studio auto-labelling ML backend", "version": "1"},
    "components": {
        "schemas": {
            "Error": {"type": "object", "required": ["error", "status"],
                      "properties": {"error": {"type": "string"}, "status": {"type": "integer"}}},
            "Task": {"type": "object", "properties": {"id": _ID, "data": {"type": "object"}}},
        },
        "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
    },
    "paths": {
        "/health": {"get": _operation("status, pipeline, Label Studio connection, models, zero-shot region memory, jobs, "
                                      "prediction admission, "
                                      "set-up projects (coverage, Label Studio settings, last jobs)")},
        "/setup": {"post": _operation("validate and store a project's label config and extra params; 503 with the "
                                      "reason while the project's pre-labelling cannot work", {
            "type": "object",
            "properties": {"project": _PROJECT, "schema": {"type": "string", "description": "label config XML"},
                           "hostname": {"type": "string"}, "access_token": {"type": "string"},
                           "extra_params": {"oneOf": [{"type": "object"}, {"type": "string"}]}},
            "example": {"project": "1.1700000000", "schema": EXAMPLE_CONFIG, "hostname": "http://localhost:8080",
                        "extra_params": {"num_samples": 16, "superpixels": 8}}}, extra={"503": _ERROR})},
        "/predict": {"post": _operation("predictions for tasks, one entry per task in order", {
            "type": "object", "required": ["tasks"],
            "properties": {"tasks": {"type": "array", "items": {"$ref": "#/components/schemas/Task"}},
                           "project": _PROJECT, "label_config": {"type": "string"},
                           "params": {"type": "object", "properties": {"context": {"type": "object"}}}},
            "example": {"project": 1, "label_config": EXAMPLE_CONFIG,
                        "tasks": [{"id": 1, "data": {"image": "/data/upload/1/a.png"}}]}},
            extra={"503": _ERROR})},
        "/webhook": {"post": _operation("record a Label Studio event (a hint only) and answer at once", {
            "type": "object", "required": ["action"],
            "properties": {"action": {"type": "string"}, "project": {"type": "object"},
                           "annotation": {"type": "object"}},
            "example": {"action": "ANNOTATION_CREATED", "project": {"id": 1},
                        "annotation": {"id": 3, "task": 2, "project": 1}}})},
        "/versions": {"get": _operation("model versions; with ?project the project's trained versions",
                                        parameters=[_query("project", _ID, "project id")])},
        "/versions/activate": {"post": _operation("make a trained version the served one (rollback)", {
            "type": "object", "required": ["project", "version"],
            "properties": {"project": _PROJECT, "version": {"type": "string", "pattern": "^v[0-9]{4}$"},
                           "kind": {"type": "string", "enum": ["detector", "classifier"]}}})},
        "/jobs": {
            "get": _operation("background jobs, newest first, a page at a time", parameters=[
                _query("project", _ID, "only this project's jobs"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 200}, "page size (default 50)"),
                _query("before", _ID, "page cursor: jobs with ids below this (`next_before` of the previous page)")]),
            "post": _operation("ask for a background job (coalesced with the project's pending one)", {
                "type": "object", "required": ["project"],
                "properties": {"project": _PROJECT, "kind": {"type": "string", "enum": ["predict", "train", "review"]},
                               "tasks": {"type": "array", "items": _ID}, "overwrite": {"type": "boolean"}},
                "example": {"project": 1, "kind": "predict"}}, extra={"404": _ERROR}),
        },
        "/jobs/{job_id}/cancel": {"post": _operation(
            "cancel a job (pending: at once; running: between two steps)", extra={"404": _ERROR},
            parameters=[{"name": "job_id", "in": "path", "required": True, "schema": _ID}])},
        "/events": {"get": _operation("webhook events received, newest first", parameters=[
            _query("project", _ID, "only this project's events"),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "at most this many (default 100)")])},
        "/review": {"get": _operation(
            "the project's review page (self-contained HTML); 202 and a self-reloading page while it is computed",
            parameters=_REVIEW_PROJECT, extra={
                "200": {"description": "the cached review page", **_HTML},
                "202": {"description": "no report yet: a review job is queued or running", **_HTML},
                "404": _ERROR, "503": {"description": "the review job failed (no report cached)", **_HTML}})},
        "/review.json": {"get": _operation(
            "the project's review report (label statistics, pre-label acceptance, suspicious annotations, embedding "
            "map, routing curve)", parameters=_REVIEW_PROJECT, extra={
                "202": {"description": "no report yet: {status: computing, job, progress}",
                        "content": {"application/json": {"schema": {"type": "object"}}}},
                "404": _ERROR, "503": _ERROR})},
        "/review/refresh": {"post": _operation("compute the project's review report again (a review job)",
                                               parameters=_REVIEW_PROJECT, extra={
            "202": {"description": "{status: computing, job, created}",
                    "content": {"application/json": {"schema": {"type": "object"}}}}, "404": _ERROR})},
        "/metrics": {"get": {"summary": "Prometheus metrics of this worker process",
                             "responses": {"200": {"description": "Prometheus text",
                                                   "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
    },
}


def openapi_spec() -> dict:
    """The spec as a fresh dict (callers may extend it)."""
    import copy

    return copy.deepcopy(SPEC)
