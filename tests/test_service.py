"""The HTTP protocol through Flask's test client with the real LIME pipeline (tiny sample counts)."""

import json
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from backend.core.settings import Settings
from backend.service.app import create_app
from tests.conftest import FilePeer, huge_png_header, png_bytes

ROOT = Path(__file__).resolve().parents[1]
PAYLOADS = ROOT / "tests" / "fixtures" / "ls-payloads"  # captured from Label Studio 1.23.2
CONFIG = (ROOT / "label_config.xml").read_text()
FAST = {"num_samples": 32, "superpixels": 16}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    peer = FilePeer()
    peer.routes["/data/upload/1/cat.png"] = (200, png_bytes(data.chelsea()), {})
    peer.routes["/data/upload/1/corrupt.png"] = (200, b"\x89PNG but not really", {})
    peer.routes["/data/upload/1/huge.png"] = (200, huge_png_header(30000, 30000), {})
    settings = Settings(model_dir=tmp_path_factory.mktemp("models"), preload_models=False, device="cpu",
                        label_studio_url=peer.url, label_studio_api_key="0" * 40)
    app = create_app(settings)
    client = app.test_client()
    assert client.post("/setup", json={"project": "1.123", "schema": CONFIG, "extra_params": FAST}).status_code == 200
    yield client, peer
    peer.close()


def _predict(client, *urls, project="1.123", **extra):
    tasks = [{"id": i + 1, "data": {"image": url} if url is not None else {}} for i, url in enumerate(urls)]
    return client.post("/predict", json={"tasks": tasks, "project": project, "label_config": CONFIG, **extra})


def test_health_and_root(env):
    client, _ = env
    for path in ("/", "/health"):
        body = client.get(path).get_json()
        assert body["status"] == "UP" and body["pipeline"] == "lime"
        assert body["models"]["classifier"]["source"] == "efficientnet-lite0"


def test_setup_returns_model_version(env):
    client, _ = env
    body = client.post("/setup", json=json.loads((PAYLOADS / "setup.json").read_text())["json"]).get_json()
    assert body["model_version"] == "lime-efficientnet-lite0"


def test_predict_real_photo_gives_cat_regions_for_every_control(env):
    client, _ = env
    response = _predict(client, "/data/upload/1/cat.png")
    assert response.status_code == 200
    (prediction,) = response.get_json()["results"]
    assert prediction["model_version"] == "lime-efficientnet-lite0"
    by_type = {}
    for region in prediction["result"]:
        by_type.setdefault(region["type"], []).append(region)
        assert (region["original_width"], region["original_height"]) == (451, 300)
    assert set(by_type) == {"rectanglelabels", "brushlabels", "polygonlabels", "keypointlabels", "choices"}
    assert by_type["rectanglelabels"][0]["value"]["rectanglelabels"] == ["cat"]
    assert by_type["choices"][0]["value"]["choices"] == ["cat"]
    # beside the raw score, the mirror's regions (in the image's frame): what a learned region model is fitted on
    scores = client.application.extensions["runtime"].context.scores
    (mirror,) = scores.get_mirrors(1, "lime-efficientnet-lite0", [1]).values()
    assert mirror and all(0 <= v <= 1 for row in mirror for v in row[:4]) and "cat" in {row[5] for row in mirror}
    assert scores.get(1, "lime-efficientnet-lite0", [1]) != {}


def test_batch_with_bad_tasks_keeps_good_ones(env):
    client, peer = env
    response = _predict(client, "/data/upload/1/cat.png", "/data/upload/1/missing.png", "/data/upload/1/corrupt.png",
                        "/data/upload/1/huge.png", "http://internal.example:8080/x.png", None)
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert len(results) == 6
    assert results[0]["result"]
    errors = [r.get("error", "") for r in results[1:]]
    for error, expected in zip(errors, ["HTTP 404", "not a readable image", "MAX_IMAGE_PIXELS",
                                        "neither Label Studio", "no image under data.image"]):
        assert expected in error
    assert all("result" not in r for r in results[1:])
    assert client.get("/health").get_json()["status"] == "UP"


def test_compute_starts_while_slow_downloads_are_in_flight(env):
    """Nine images, one of them slow: the first chunk of eight is computed before the slow one arrives,
    and the answer keeps task order."""
    import time

    from backend.predictions.tasks import CHUNK as PIPELINE_CHUNK

    client, peer = env
    runtime = client.application.extensions["runtime"]
    rng = np.random.default_rng(0)
    for i in range(PIPELINE_CHUNK + 1):
        peer.routes[f"/data/upload/1/small{i}.png"] = (200, png_bytes(rng.integers(0, 255, (48, 64, 3), np.uint8)), {})
    peer.delays["/data/upload/1/small0.png"] = 3.0
    calls = []
    original = runtime.context.selector.run

    def recording(pipeline, images, ontology, params, *args):
        calls.append((time.monotonic(), len(images)))
        return original(pipeline, images, ontology, params, *args)

    runtime.context.selector.run = recording
    try:
        response = _predict(client, *[f"/data/upload/1/small{i}.png" for i in range(PIPELINE_CHUNK + 1)])
    finally:
        del runtime.context.selector.run
    results = response.get_json()["results"]
    assert len(results) == PIPELINE_CHUNK + 1 and all("result" in r for r in results)
    assert [n // 2 for _, n in calls] == [PIPELINE_CHUNK, 1]  # each call also holds the mirrored images
    assert calls[0][0] < peer.served_at["/data/upload/1/small0.png"] <= calls[1][0]


@pytest.mark.parametrize("path,body,status,message", [
    ("/predict", b"{not json", 400, "not valid JSON"),
    ("/predict", b"[1, 2]", 400, "JSON object"),
    ("/predict", json.dumps({"tasks": []}).encode(), 400, "non-empty list"),
    ("/predict", json.dumps({"tasks": [{"data": {"image": "x"}}], "label_config":
                             '<View><Text name="t" value="$t"/></View>'}).encode(), 400, "no supported control"),
    ("/predict", json.dumps({"tasks": [{"data": {}}]}).encode(), 400, "label_config"),
    ("/setup", json.dumps({"project": "2", "schema": "<View/>"}).encode(), 400, "no supported control"),
    ("/setup", json.dumps({"project": "2", "schema": CONFIG, "extra_params": {"bogus": 1}}).encode(), 400, "bogus"),
    ("/setup", json.dumps({"project": "x.y", "schema": CONFIG}).encode(), 400, "project"),
    ("/webhook", b"{}", 400, "action"),
    ("/webhook", b"nope", 400, "not valid JSON"),
])
def test_bad_requests_get_clear_4xx(env, path, body, status, message):
    client, _ = env
    response = client.post(path, data=body, content_type="application/json")
    assert response.status_code == status
    assert message in response.get_json()["error"]
    assert client.get("/health").status_code == 200


def test_unknown_pipeline_in_extra_params(env):
    client, _ = env
    response = client.post("/setup", json={"project": "3", "schema": CONFIG, "extra_params": {"pipeline": "magic"}})
    assert response.status_code == 400 and "magic" in response.get_json()["error"]


def test_labels_no_classifier_class_knows(env):
    client, _ = env
    config = ('<View><Image name="image" value="$image"/><RectangleLabels name="r" toName="image">'
              '<Label value="zzzqx"/></RectangleLabels></View>')
    response = client.post("/predict", json={"tasks": [{"id": 1, "data": {"image": "/data/upload/1/cat.png"}}],
                                             "label_config": config, "project": "1"})
    assert response.status_code == 400 and "predicted_values" in response.get_json()["error"]


@pytest.mark.parametrize("name", ["webhook_ANNOTATION_CREATED", "webhook_ANNOTATION_UPDATED",
                                  "webhook_START_TRAINING", "webhook_TASKS_CREATED"])
def test_real_webhook_payloads(env, name):
    client, _ = env
    payload = json.loads((PAYLOADS / f"{name}.json").read_text())["json"]
    body = client.post("/webhook", json=payload).get_json()
    action = name.split("_", 1)[1]
    assert body["action"] == action
    assert body["status"] == "accepted"
    events = client.get(f"/events?project={body['project']}").get_json()["events"]
    assert events[0]["action"] == action


def test_versions_and_metrics(env):
    client, _ = env
    assert "lime-efficientnet-lite0" in client.get("/versions").get_json()["versions"]
    text = client.get("/metrics").get_data(as_text=True)
    assert "backend_requests_total" in text and 'backend_tasks_total{outcome="ok",pipeline="lime"}' in text
    assert "backend_webhook_events_total" in text


def test_basic_auth(make_settings):
    app = create_app(make_settings(basic_auth_user="ls", basic_auth_pass="secret"))
    client = app.test_client()
    assert client.get("/health").status_code == 200
    # the webhook is protected too: Label Studio's project webhook gets the credentials after Connect
    assert client.post("/webhook", json={"action": "PROJECT_UPDATED"}).status_code == 401
    assert client.post("/webhook", json={"action": "PROJECT_UPDATED"}, auth=("ls", "secret")).status_code == 200
    denied = client.post("/setup", json={"schema": CONFIG})
    assert denied.status_code == 401 and "basic auth" in denied.get_json()["error"]
    ok = client.post("/setup", json={"schema": CONFIG}, auth=("ls", "secret"))
    assert ok.status_code == 200


@pytest.mark.parametrize("basic, secret, headers, status", [
    (False, "", {}, 200),  # nothing configured: open
    (False, "s3cret", {}, 401),
    (False, "s3cret", {"X-Webhook-Secret": "wrong"}, 401),
    (False, "s3cret", {"X-Webhook-Secret": "s3cret"}, 200),
    (True, "s3cret", {"X-Webhook-Secret": "s3cret"}, 200),  # either credential
    (True, "s3cret", {"Authorization": "Basic bHM6c2VjcmV0"}, 200),  # ls:secret
    (True, "", {"X-Webhook-Secret": "anything"}, 401),
])
def test_webhook_credentials(make_settings, basic, secret, headers, status):
    extra = {"basic_auth_user": "ls", "basic_auth_pass": "secret"} if basic else {}
    client = create_app(make_settings(webhook_secret=secret, run_jobs=False, **extra)).test_client()
    assert client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}},
                       headers=headers).status_code == status


def test_settings_from_env_validates():
    s = Settings.from_env({"MODEL_DIR": "/tmp/x", "DEVICE": "cpu", "WORKERS": "3", "ALLOWED_IMAGE_HOSTS": "a.com, B.org",
                           "PRELOAD_MODELS": "false", "LABEL_STUDIO_URL": "http://ls:8080/"})
    assert (s.workers, s.allowed_image_hosts, s.preload_models, s.label_studio_url) == \
        (3, ("a.com", "b.org"), False, "http://ls:8080")
    with pytest.raises(ValueError, match="DEVICE"):
        Settings.from_env({"DEVICE": "tpu"})
    with pytest.raises(ValueError, match="WORKERS"):
        Settings.from_env({"WORKERS": "many"})
