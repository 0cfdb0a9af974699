"""gunicorn settings from the same `Settings` object the app reads (PORT, WORKERS, THREADS).

Used by `make serve` and the Docker image: `gunicorn -c python:backend.service.gunicorn_conf ...`.
"""

from backend.core.settings import Settings

_settings = Settings.from_env()

bind = f"0.0.0.0:{_settings.port}"
workers = _settings.workers
threads = _settings.threads
# waitress inside each worker: requests are read completely before a thread runs the app, so slow clients never
# hold a thread (gunicorn's gthread hands a connection to a thread at its first byte); THREADS app threads
worker_class = "backend.service.waitress_worker.WaitressWorker"
timeout = 300  # whole-batch predictions on CPU can take minutes; Label Studio itself gives up at 100 s
graceful_timeout = 30
