"""Flask app factory. Run with gunicorn: `gunicorn 'backend.service.app:create_app()'`.

Routes: `GET /`, `GET /health`, `POST /setup`, `POST /predict`, `POST /webhook`, `GET /versions`,
`POST /versions/activate`, `GET /jobs`, `GET /metrics`, `GET /events`.
"""

from __future__ import annotations

import atexit
import hmac
import logging
import re
import threading
import time

from flask import Flask, Response, g, jsonify, request

from backend import __version__
from backend.core.errors import BackendError, BadRequest, ModelUnavailable, Overloaded, Unauthorized
from backend.core.params import PredictParams
from backend.core.settings import Settings
from backend.jobs.training import TRAINED_KINDS
from backend.labelstudio.config import parse_label_config
from backend.service.openapi import openapi_spec
from backend.service.inputs import parse_json_object, parse_project_id, query_int
from backend.service.predict import handle_predict
from backend.service.runtime import Runtime
from backend.service.webhook import handle_webhook

log = logging.getLogger(__name__)
OPEN_PATHS = ("/", "/health", "/webhook", "/openapi.json")  # the webhook carries no credentials: see service/webhook.py
MAX_BODY_BYTES = 32 * 1024 * 1024
VERSION_NAME = re.compile(r"^v\d{4,9}$")
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def clean_message(message: str, limit: int = 2000) -> str:
    """An error message fit for a caller: no memory addresses, bounded length."""
    message = _ADDRESS.sub("", str(message))
    return message if len(message) <= limit else message[:limit] + "…"


def _same(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a credential (any characters)."""
    return hmac.compare_digest((given or "").encode("utf-8", "surrogatepass"), expected.encode("utf-8"))


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Flask:
    settings = settings or Settings.from_env()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runtime = runtime or Runtime(settings)
    app = Flask("backend")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.extensions["runtime"] = runtime

    @app.before_request
    def _start():
        g.started = time.perf_counter()
        if settings.basic_auth_enabled and request.path not in OPEN_PATHS:
            auth = request.authorization
            ok = auth is not None and _same(auth.username, settings.basic_auth_user) \
                & _same(auth.password, settings.basic_auth_pass)
            if not ok:
                raise Unauthorized("basic auth required: set the same user and password in Label Studio's "
                                   "model connection (Authentication method: Basic Auth)")

    @app.after_request
    def _count(response):
        endpoint = request.url_rule.rule if request.url_rule else "unknown"
        runtime.metrics.requests.labels(endpoint, str(response.status_code)).inc()
        runtime.metrics.latency.labels(endpoint).observe(time.perf_counter() - g.get("started", time.perf_counter()))
        return response

    @app.errorhandler(BackendError)
    def _backend_error(exc: BackendError):
        runtime.metrics.errors.labels(exc.__class__.__name__).inc()
        message = clean_message(exc.message)
        log.warning("%s %s: %s", request.method, request.path, message)
        response = jsonify({"error": message, "status": exc.status})
        if isinstance(exc, Unauthorized):
            response.headers["WWW-Authenticate"] = 'Basic realm="label-studio-ml-backend"'
        if isinstance(exc, Overloaded):
            response.headers["Retry-After"] = str(exc.retry_after_s)
        return response, exc.status

    @app.errorhandler(413)
    def _too_large(_exc):
        return jsonify({"error": f"request body is larger than {MAX_BODY_BYTES // 2**20} MiB", "status": 413}), 413

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        code = getattr(exc, "code", None)
        if isinstance(code, int) and 400 <= code < 500:
            return jsonify({"error": clean_message(getattr(exc, "description", None) or exc), "status": code}), code
        runtime.metrics.errors.labels("internal").inc()
        log.exception("unhandled error on %s", request.path)
        return jsonify({"error": clean_message(f"internal error: {exc.__class__.__name__}: {exc}"), "status": 500}), 500

    def body() -> dict:
        return parse_json_object(request.get_data(cache=True))

    @app.get("/")
    @app.get("/health")
    def health():
        return jsonify({
            "status": "UP",
            "model_class": "backend",
            "version": __version__,
            "device": runtime.device,
            "pipeline": runtime.active_pipeline_name(),
            "pipelines": sorted(runtime.pipelines),
            "models": runtime.model_status(),
            "jobs": runtime.jobs.summary(),
            "job_runner": ("rq" if runtime.dispatcher else "in-process") if settings.run_jobs else "off",
            "predict": runtime.admission.status(),
        })

    @app.post("/setup")
    def setup():
        data = body()
        project_id = parse_project_id(data.get("project"))
        extra = data.get("extra_params")
        if isinstance(extra, str):
            extra = parse_json_object(extra, "extra_params") if extra.strip() else None
        params = PredictParams().with_overrides(extra)
        schema = data.get("schema") or ""
        ontology = parse_label_config(schema, params)  # reject unsupported configs at connection time
        runtime.connection.update_from_setup(data.get("hostname"), data.get("access_token"),
                                             trusted=settings.basic_auth_enabled)
        if project_id is not None:
            runtime.store.save_project(project_id, extra or {}, schema)
        try:
            model_version = runtime.pipeline_for(project_id, params, ontology).model_version
        except ModelUnavailable:  # PIPELINE=trained before the first training: connect, predict later
            model_version = f"project{project_id}-detector-untrained"
        return jsonify({"model_version": model_version})

    @app.post("/predict")
    def predict():
        return jsonify(handle_predict(runtime, body()))

    @app.post("/webhook")
    def webhook():
        return jsonify(handle_webhook(runtime, body()))

    @app.get("/versions")
    def versions():
        names = [p.model_version for p in runtime.pipelines.values()]
        project = query_int(request.args, "project", None, 1, 2**63 - 1)
        trained, active = [], {}
        for kind in TRAINED_KINDS if project is not None else ():
            current = runtime.registry.active(project, kind)
            active[kind] = current.name if current else None
            trained += [{"kind": kind, "version": v.name, "label": v.label, "metrics": v.metrics,
                         "active": v.name == active[kind]} for v in runtime.registry.versions(project, kind)]
        return jsonify({"versions": names + [v["label"] for v in trained],
                        "model_version": runtime.pipeline().model_version, "trained": trained, "active": active})

    @app.post("/versions/activate")
    def activate_version():
        """{"project", "version", "kind"?}: make an earlier (or later) version the served one (rollback);
        `kind` may be left out when the project has trained versions of one kind only."""
        data = body()
        project = parse_project_id(data.get("project"), required=True)
        kinds = [k for k in TRAINED_KINDS if runtime.registry.versions(project, k)]
        kind = data.get("kind") or (kinds[0] if len(kinds) == 1 else None)
        if kind not in TRAINED_KINDS:
            raise BadRequest(f"'kind' must be one of {TRAINED_KINDS} (project {project} has versions of {kinds})")
        name = data.get("version")
        if not isinstance(name, str) or not VERSION_NAME.match(name):
            raise BadRequest(f"'version' must be a version name such as 'v0001', got {str(name)[:60]!r}")
        try:
            version = runtime.registry.activate(project, kind, name)
        except KeyError as exc:
            raise BadRequest(f"cannot activate: {exc.args[0]}") from None
        return jsonify({"kind": kind, "active": version.name, "model_version": version.label})

    @app.get("/jobs")
    def jobs():
        """Newest first, `limit` (1..200, default 50) per page; `before=<id>` gives the next page."""
        project = query_int(request.args, "project", None, 1, 2**63 - 1)
        limit = query_int(request.args, "limit", 50, 1, 200)
        page = runtime.jobs.jobs(project, limit, query_int(request.args, "before", None, 1, 2**63 - 1))
        after = page[-1]["id"] if len(page) == limit else None
        return jsonify({"jobs": page, "total": runtime.jobs.count(project), "next_before": after})

    @app.get("/events")
    def events():
        project = query_int(request.args, "project", None, 1, 2**63 - 1)
        return jsonify({"events": runtime.store.events(project, query_int(request.args, "limit", 100, 1, 1000))})

    @app.get("/openapi.json")
    def openapi():
        return jsonify(openapi_spec())

    @app.get("/metrics")
    def metrics():
        return Response(runtime.metrics.render(), mimetype="text/plain; version=0.0.4")

    if settings.preload_models:
        threading.Thread(target=runtime.warm_up, name="warm-up", daemon=True).start()
    if settings.run_jobs:
        runner = runtime.start_job_runner()
        app.extensions["job_runner"] = runner
        if runner is not None:  # at exit (gunicorn's SIGTERM included) stop the job cleanly, before the interpreter goes
            atexit.register(runner.stop)
    return app
