"""A protected `/webhook` against a real Label Studio: with `WEBHOOK_SECRET`, the backend adds `X-Webhook-Secret` to
the project webhook Label Studio created at Connect, so Label Studio's events keep arriving while forged ones
(without the header) are refused."""

import pytest
import requests

from tests.e2e.projects import FAST, Project, finished_jobs, wait_until
from tests.e2e.servers import BackendServer

pytestmark = pytest.mark.e2e
SECRET = "s3cret-for-the-webhook"


@pytest.fixture(scope="module")
def backend(label_studio, tmp_path_factory):
    server = BackendServer(tmp_path_factory.mktemp("webhook-secret"), label_studio.url, label_studio.token,
                           PIPELINE="lime", PRELOAD_MODELS="false", WEBHOOK_SECRET=SECRET)
    yield server
    server.stop()


def test_label_studio_webhook_gets_the_secret_and_its_events_arrive(label_studio, backend):
    project = Project(label_studio, backend, "webhook-secret", FAST)

    def webhook():
        hooks = requests.get(f"{label_studio.url}/api/webhooks/", params={"project": project.id},
                             headers=project.headers, timeout=30).json()
        ours = [h for h in hooks if h["url"] == f"{backend.url}/webhook"]
        return ours[0] if ours and (ours[0].get("headers") or {}).get("X-Webhook-Secret") == SECRET else None
    wait_until(webhook, 60, "the secret header on Label Studio's webhook", backend.log)

    forged = requests.post(f"{backend.url}/webhook", json={"action": "START_TRAINING", "project": {"id": project.id}},
                           timeout=10)
    assert forged.status_code == 401 and "X-Webhook-Secret" in forged.json()["error"]

    project.upload(3, seed=7)  # Label Studio's TASKS_CREATED now carries the secret: recorded, and predicted
    wait_until(lambda: any(e["action"] == "TASKS_CREATED" for e in requests.get(
        f"{backend.url}/events", params={"project": project.id}, timeout=10).json()["events"]), 60,
        "Label Studio's TASKS_CREATED event", backend.log)
    finished_jobs(backend, project.id)
    assert len({p["task"] for p in project.predictions()}) == 3
