"""Flask app factory. Run with gunicorn: `gunicorn 'backend.service.app:create_app()'`.

Routes: `GET /`, `GET /health`, `POST /setup`, `POST /predict`, `POST /webhook`, `GET /versions`,
`POST /versions/activate`, `GET /jobs`, `POST /jobs`, `POST /jobs/<id>/cancel`, `GET /events`, `GET /metrics`,
`GET /openapi.json`, `GET /review`, `GET /review.json`, `POST /review/refresh`. Each route hands the parsed request
to a handler module (`setup`, `predict`, `webhook`, `versions`, `job_routes`, `review_routes`).
"""

from __future__ import annotations

import atexit
import hmac
import logging
import re
import threading
import time

from flask import Flask, Response, g, jsonify, request

from backend.core.errors import BackendError, Overloaded, StorageUnavailable, Unauthorized, without_addresses
from backend.core.settings import WEBHOOK_SECRET_HEADER, Settings
from backend.service.inputs import parse_json_object
from backend.service.job_routes import cancel_job, create_job, list_events, list_jobs
from backend.service.openapi import openapi_spec
from backend.service import review_routes
from backend.service.predict import handle_predict
from backend.service.runtime import Runtime
from backend.service.setup import handle_setup
from backend.service.versions import activate_version, list_versions
from backend.service.webhook import handle_webhook
from backend.store.health import is_storage_error, storage_message

log = logging.getLogger(__name__)
OPEN_PATHS = ("/", "/health", "/openapi.json")
MAX_BODY_BYTES = 32 * 1024 * 1024
REASON_LIMIT = 1000  # characters of an error message repeated in the HTTP status line (clients read 64 KiB lines)
ASCII_FOR = {"→": "->", "…": "...", "—": "-", "–": "-", "≥": ">=", "≤": "<=", "×": "x", "’": "'", "“": '"', "”": '"'}
_TAG = re.compile(r"<(/?[A-Za-z][^<>]*)>")  # Label Studio renders the status line as HTML: no tags


def clean_message(message: str, limit: int = 2000) -> str:
    """An error message fit for a caller: no memory addresses, bounded length."""
    message = without_addresses(message)
    return message if len(message) <= limit else message[:limit] + "…"


def status_line(status: int, message: str) -> str:
    """"<status> <message>" for the HTTP status line: Label Studio shows only the status line of an ML backend's
    error ("503 Server Error: <reason> for url: …", on the model card's Connect / Edit dialogs), never the body, so
    the reason phrase carries the message (printable ASCII, one line, at most `REASON_LIMIT` characters)."""
    message = _TAG.sub(r"(\1)", message)
    for plain, ascii_text in ASCII_FOR.items():
        message = message.replace(plain, ascii_text)
    text = " ".join(message.encode("ascii", "replace").decode().split())
    text = "".join(c for c in text if c.isprintable())
    if len(text) > REASON_LIMIT:
        text = text[:REASON_LIMIT].rsplit(" ", 1)[0] + " ..."
    return f"{status} {text or 'Error'}"


def _same(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a credential (any characters)."""
    return hmac.compare_digest((given or "").encode("utf-8", "surrogatepass"), expected.encode("utf-8"))


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Flask:
    settings = settings or Settings.from_env()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runtime = runtime or Runtime(settings)
    app = Flask("backend")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False  # keys in the order written: a /predict answer's `warnings` first
    app.extensions["runtime"] = runtime
    _install_auth_and_metrics(app, settings, runtime)
    _install_error_handlers(app, runtime)
    _install_routes(app, runtime)
    runtime.context.label_studio.refresh_in_background()  # /health and /setup say whether the token works
    if settings.preload_models:
        threading.Thread(target=runtime.warm_up, name="warm-up", daemon=True).start()
    if settings.run_jobs:
        app.extensions["job_runner"] = runtime.start_job_runner()
        atexit.register(runtime.stop)  # at exit (gunicorn's SIGTERM too) the job stops before the interpreter does
    return app


def _install_auth_and_metrics(app: Flask, settings: Settings, runtime: Runtime) -> None:
    @app.before_request
    def _start():
        g.started = time.perf_counter()
        g.authenticated = False
        secret = runtime.context.webhook_secret
        if request.path == "/webhook" and secret and _same(request.headers.get(WEBHOOK_SECRET_HEADER), secret):
            return None  # Label Studio's project webhook with the secret (see webhook.py)
        if request.path == "/webhook" and not settings.basic_auth_enabled and secret:
            raise Unauthorized(f"/webhook needs the {WEBHOOK_SECRET_HEADER} header (WEBHOOK_SECRET); the backend adds "
                               "it to the project's Label Studio webhook after Connect")
        if settings.basic_auth_enabled:
            auth = request.authorization
            ok = auth is not None and _same(auth.username, settings.basic_auth_user) \
                & _same(auth.password, settings.basic_auth_pass)
            g.authenticated = ok
            if request.path in OPEN_PATHS:
                return None  # open, but what /health shows depends on `g.authenticated`
            if not ok:
                raise Unauthorized("basic auth required: set the same user and password in Label Studio's "
                                   "model connection (Authentication method: Basic Auth)")
            g.authenticated = True

    @app.after_request
    def _count(response):
        endpoint = request.url_rule.rule if request.url_rule else "unknown"
        runtime.metrics.requests.labels(endpoint, str(response.status_code)).inc()
        runtime.metrics.latency.labels(endpoint).observe(time.perf_counter() - g.get("started", time.perf_counter()))
        return response


def _install_error_handlers(app: Flask, runtime: Runtime) -> None:
    @app.errorhandler(BackendError)
    def _backend_error(exc: BackendError):
        runtime.metrics.errors.labels(exc.__class__.__name__).inc()
        message = clean_message(exc.message)
        log.warning("%s %s: %s", request.method, request.path, message)
        response = jsonify({"error": message, "status": exc.status})
        response.status = status_line(exc.status, message)
        if isinstance(exc, Unauthorized):
            response.headers["WWW-Authenticate"] = 'Basic realm="label-studio-ml-backend"'
        if isinstance(exc, Overloaded):
            response.headers["Retry-After"] = str(exc.retry_after_s)
        return response

    @app.errorhandler(413)
    def _too_large(_exc):
        return jsonify({"error": f"request body is larger than {MAX_BODY_BYTES // 2**20} MiB", "status": 413}), 413

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        code = getattr(exc, "code", None)
        if isinstance(code, int) and 400 <= code < 500:
            return jsonify({"error": clean_message(getattr(exc, "description", None) or exc), "status": code}), code
        if is_storage_error(exc):  # a full or read-only disk: the caller may retry once it is fixed
            return _backend_error(StorageUnavailable(storage_message(exc, runtime.settings.model_dir)))
        runtime.metrics.errors.labels("internal").inc()
        log.exception("unhandled error on %s", request.path)
        return jsonify({"error": clean_message(f"internal error: {exc.__class__.__name__}: {exc}"), "status": 500}), 500


def _install_routes(app: Flask, runtime: Runtime) -> None:
    def body() -> dict:
        return parse_json_object(request.get_data(cache=True))

    def health():  # with basic auth on, the per-project details and Label Studio's answers only for the caller with it
        return jsonify(runtime.health(details=g.authenticated or not runtime.settings.basic_auth_enabled))

    app.add_url_rule("/", "root", health)
    app.add_url_rule("/health", "health", health)
    app.add_url_rule("/setup", "setup", lambda: jsonify(handle_setup(runtime, body(), g.authenticated)),
                     methods=["POST"])
    app.add_url_rule("/predict", "predict", lambda: jsonify(handle_predict(runtime, body())), methods=["POST"])
    app.add_url_rule("/webhook", "webhook", lambda: jsonify(handle_webhook(runtime, body())), methods=["POST"])
    app.add_url_rule("/versions", "versions", lambda: jsonify(list_versions(runtime, request.args)))
    app.add_url_rule("/versions/activate", "activate", lambda: jsonify(activate_version(runtime, body())),
                     methods=["POST"])
    app.add_url_rule("/jobs", "jobs", lambda: jsonify(list_jobs(runtime, request.args)))
    app.add_url_rule("/jobs", "create_job", lambda: jsonify(create_job(runtime, body())), methods=["POST"])
    app.add_url_rule("/jobs/<job_id>/cancel", "cancel_job", lambda job_id: jsonify(cancel_job(runtime, job_id)),
                     methods=["POST"])
    app.add_url_rule("/events", "events", lambda: jsonify(list_events(runtime, request.args)))
    app.add_url_rule("/openapi.json", "openapi", lambda: jsonify(openapi_spec()))
    app.add_url_rule("/metrics", "metrics",
                     lambda: Response(runtime.metrics.render(), mimetype="text/plain; version=0.0.4"))
    review_routes.register(app, runtime)
