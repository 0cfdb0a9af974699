"""Flask app factory. Run with gunicorn: `gunicorn 'backend.service.app:create_app()'`.

Routes: `GET /`, `GET /health`, `POST /setup`, `POST /predict`, `POST /webhook`, `GET /versions`,
`POST /versions/activate`, `GET /jobs`, `GET /metrics`, `GET /events`.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time

from flask import Flask, Response, g, jsonify, request

from backend import __version__
from backend.core.errors import BackendError, BadRequest, ModelUnavailable, Unauthorized
from backend.core.params import PredictParams
from backend.core.settings import Settings
from backend.jobs.training import TRAINED_KINDS
from backend.labelstudio.config import parse_label_config
from backend.service.predict import handle_predict, parse_project_id
from backend.service.runtime import Runtime
from backend.service.webhook import handle_webhook

log = logging.getLogger(__name__)
OPEN_PATHS = ("/", "/health", "/webhook")  # the webhook carries no credentials: see service/webhook.py


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Flask:
    settings = settings or Settings.from_env()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runtime = runtime or Runtime(settings)
    app = Flask("backend")
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024 * 1024
    app.extensions["runtime"] = runtime

    @app.before_request
    def _start():
        g.started = time.perf_counter()
        if settings.basic_auth_enabled and request.path not in OPEN_PATHS:
            auth = request.authorization
            ok = auth is not None and hmac.compare_digest(auth.username or "", settings.basic_auth_user) \
                and hmac.compare_digest(auth.password or "", settings.basic_auth_pass)
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
        log.warning("%s %s: %s", request.method, request.path, exc.message)
        response = jsonify({"error": exc.message, "status": exc.status})
        if isinstance(exc, Unauthorized):
            response.headers["WWW-Authenticate"] = 'Basic realm="label-studio-ml-backend"'
        return response, exc.status

    @app.errorhandler(413)
    def _too_large(_exc):
        return jsonify({"error": "request body is larger than 64 MiB", "status": 413}), 413

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        code = getattr(exc, "code", None)
        if isinstance(code, int) and 400 <= code < 500:
            return jsonify({"error": str(exc), "status": code}), code
        runtime.metrics.errors.labels("internal").inc()
        log.exception("unhandled error on %s", request.path)
        return jsonify({"error": f"internal error: {exc.__class__.__name__}: {exc}", "status": 500}), 500

    def body() -> dict:
        data = request.get_data(cache=True)
        try:
            parsed = json.loads(data or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"request body is not valid JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise BadRequest("request body must be a JSON object")
        return parsed

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
        })

    @app.post("/setup")
    def setup():
        data = body()
        project_id = parse_project_id(data.get("project"))
        extra = data.get("extra_params")
        if isinstance(extra, str):
            try:
                extra = json.loads(extra) if extra.strip() else None
            except ValueError as exc:
                raise BadRequest(f"extra_params is not valid JSON: {exc}") from None
        params = PredictParams().with_overrides(extra)
        schema = data.get("schema") or ""
        ontology = parse_label_config(schema, params)  # reject unsupported configs at connection time
        runtime.connection.update_from_setup(data.get("hostname"), data.get("access_token"))
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
        project = request.args.get("project", type=int)
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
        project = parse_project_id(data.get("project"))
        if project is None:
            raise BadRequest("'project' is required")
        kinds = [k for k in TRAINED_KINDS if runtime.registry.versions(project, k)]
        kind = data.get("kind") or (kinds[0] if len(kinds) == 1 else None)
        if kind not in TRAINED_KINDS:
            raise BadRequest(f"'kind' must be one of {TRAINED_KINDS} (project {project} has versions of {kinds})")
        try:
            version = runtime.registry.activate(project, kind, str(data.get("version")))
        except (KeyError, TypeError) as exc:
            raise BadRequest(f"cannot activate: {exc}") from None
        return jsonify({"kind": kind, "active": version.name, "model_version": version.label})

    @app.get("/jobs")
    def jobs():
        return jsonify({"jobs": runtime.jobs.jobs(request.args.get("project", type=int))})

    @app.get("/events")
    def events():
        project = request.args.get("project", type=int)
        return jsonify({"events": runtime.store.events(project, request.args.get("limit", 100, type=int))})

    @app.get("/metrics")
    def metrics():
        return Response(runtime.metrics.render(), mimetype="text/plain; version=0.0.4")

    if settings.preload_models:
        threading.Thread(target=runtime.warm_up, name="warm-up", daemon=True).start()
    if settings.run_jobs:
        app.extensions["job_runner"] = runtime.start_job_runner()
    return app
