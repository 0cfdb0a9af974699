FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends make libgl1 libglib2.0-0 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY backend ./backend
RUN pip install --no-cache-dir ".[queue]"
ENV MODEL_DIR=/models PORT=9090
EXPOSE 9090
CMD ["gunicorn", "-c", "python:backend.service.gunicorn_conf", "backend.service.app:create_app()"]
