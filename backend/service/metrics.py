"""Prometheus metrics of one worker process (exposed as text at `GET /metrics`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("backend_requests_total", "HTTP requests", ["endpoint", "status"],
                                registry=self.registry)
        self.latency = Histogram("backend_request_seconds", "HTTP request latency", ["endpoint"],
                                 buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
                                 registry=self.registry)
        self.tasks = Counter("backend_tasks_total", "Tasks predicted, by outcome", ["pipeline", "outcome"],
                             registry=self.registry)
        self.regions = Counter("backend_regions_total", "Regions predicted", ["pipeline"], registry=self.registry)
        self.errors = Counter("backend_errors_total", "Errors by kind", ["kind"], registry=self.registry)
        self.webhooks = Counter("backend_webhook_events_total", "Webhook events", ["action"],
                                registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
