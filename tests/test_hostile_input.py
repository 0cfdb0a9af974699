"""Hostile bodies and query strings per route → a 4xx whose message names the problem (never a 500), and the
worker keeps serving; unbounded webhook input stays bounded; no secret in any answer."""

import json

import pytest

from backend.core.params import CHOICES, RANGES, TRAIN_PREFIX, PredictParams, TrainParams
from backend.service.app import clean_message, create_app

CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
          '<Label value="cat"/></RectangleLabels></View>')
TOKEN = "0123456789abcdef0123456789abcdef01234567"
DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 70 + b"1" + b"}" * 70
HUGE = "99999999999999999999"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from backend.core.settings import Settings

    settings = Settings(model_dir=tmp_path_factory.mktemp("models"), preload_models=False, device="cpu",
                        run_jobs=False, label_studio_api_key=TOKEN, basic_auth_user="ls", basic_auth_pass="pw")
    app = create_app(settings)
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = "Basic bHM6cHc="  # ls:pw
    assert client.post("/setup", json={"project": 1, "schema": CONFIG}).status_code == 200
    return client


def _raw(text: str) -> bytes:
    return text.encode()


POST_ROUTES = ("/setup", "/predict", "/webhook", "/versions/activate")


# (method, path, body bytes or None, status, fragment of the message)
CASES = [
    *[("POST", path, DEEP, 400, "nested") for path in POST_ROUTES],
    *[("POST", path, DEEP_OBJECT, 400, "nested more than 64") for path in POST_ROUTES],
    ("POST", "/setup", _raw(f'{{"project": {HUGE}, "schema": "x"}}'), 400, "project must be a whole number"),
    ("POST", "/predict", _raw(f'{{"project": {HUGE}, "tasks": [{{"data": {{}}}}]}}'), 400, "project"),
    ("POST", "/setup", _raw('{"project": "1.2.3", "schema": "x"}'), 400, "'<id>.<timestamp>'"),
    ("POST", "/setup", _raw('{"project": true, "schema": "x"}'), 400, "project"),
    ("POST", "/setup", _raw('{"project": 1, "schema": "x", "extra_params": {"box_threshold": NaN}}'), 400,
     "NaN is not a JSON number"),
    ("POST", "/setup", _raw('{"project": 1, "schema": "x", "extra_params": {"num_samples": Infinity}}'), 400,
     "Infinity"),
    ("POST", "/setup", _raw('{"project": 1, "schema": "x", "extra_params": "{\\"nms_iou\\": -Infinity}"}'), 400,
     "extra_params is not valid JSON: -Infinity"),
    ("POST", "/setup", _raw(json.dumps({"project": 1, "schema": CONFIG, "extra_params": {"num_samples": 1e300}})),
     400, "extra_params.num_samples must be a whole number between 8 and 4096"),
    ("POST", "/setup", _raw(json.dumps({"project": 1, "schema": CONFIG, "extra_params": {"lime_input_size": 10**6}})),
     400, "lime_input_size must be a whole number between 32 and 512"),
    ("POST", "/setup", _raw(json.dumps({"project": 1, "schema": CONFIG, "extra_params": {"cascade_prompt": "x" * 300}})),
     400, "cascade_prompt must be a string of at most 200"),
    ("POST", "/setup", _raw(json.dumps({"project": 1, "schema": CONFIG, "extra_params": {"prompts": {"cat": [1]}}})),
     400, "extra_params.prompts must map label values"),
    ("POST", "/setup", _raw(json.dumps({"project": 1, "schema": {"a": 1}})), 400, "label config must be"),
    ("POST", "/setup", _raw(json.dumps({"project": 1, "schema": CONFIG, "access_token": ["x"]})), 400, "access_token"),
    ("POST", "/predict", _raw(json.dumps({"project": 1, "tasks": [{"id": 1, "data": {"image": "/x.png"}}],
                                          "params": {"context": {"result": []}}})), 400, "non-empty 'result' list"),
    ("POST", "/predict", _raw(json.dumps({"project": 1, "tasks": [{"id": 1, "data": {"image": "/x.png"}}],
                                          "params": {"context": {"result": [{"type": "x", "value": {}}]}}})),
     400, "region 0: type 'x' is not a keypoint or rectangle"),
    *[("POST", "/predict", _raw(json.dumps({"project": 1, "tasks": [{"id": 1, "data": data}],
                                            "params": {"context": {"result": [{"type": "keypointlabels",
                                                                                "value": {"x": 1, "y": 1}}]}}})),
       400, "no 'data' object") for data in ([1, 2], "image.png", 7)],
    ("POST", "/predict", _raw(json.dumps({"project": 1, "tasks": "all"})), 400, "'tasks' must be a non-empty list"),
    ("POST", "/versions/activate", _raw(json.dumps({"project": 1, "version": "/etc/passwd", "kind": "detector"})),
     400, "'version' must be a version name"),
    ("POST", "/versions/activate", _raw(json.dumps({"project": 1, "version": "../v0001", "kind": "detector"})),
     400, "'version'"),
    ("POST", "/versions/activate", _raw(json.dumps({"project": 1, "version": "v0001", "kind": "x" * 10})),
     400, "'kind' must be one of"),
    ("POST", "/versions/activate", _raw(json.dumps({"project": 1, "version": "v0001", "kind": "detector"})),
     400, "has no detector version 'v0001'"),
    ("POST", "/webhook", _raw(json.dumps({"action": ["x"]})), 400, "'action' string"),
    ("GET", f"/jobs?project={HUGE}", None, 400, "'project' must be a whole number"),
    ("GET", "/jobs?limit=0", None, 400, "'limit'"),
    ("GET", "/jobs?before=abc", None, 400, "'before'"),
    ("GET", f"/events?limit={HUGE}", None, 400, "'limit' must be a whole number in [1, 1000]"),
    ("GET", "/events?limit=-5", None, 400, "'limit'"),
    ("GET", f"/events?project={HUGE}", None, 400, "'project'"),
    ("GET", f"/versions?project={HUGE}", None, 400, "'project'"),
    ("GET", "/versions?project=x", None, 400, "'project'"),
    # ids are ASCII digits: "²" and "١٢" pass str.isdigit(), and a 5000-digit string is not converted at all
    ("POST", "/setup", _raw(json.dumps({"project": "²", "schema": CONFIG})), 400, "project must be"),
    ("POST", "/setup", _raw(json.dumps({"project": "١٢", "schema": CONFIG})), 400, "project must be"),
    ("POST", "/setup", _raw(json.dumps({"project": "9" * 5000, "schema": CONFIG})), 400, "project must be"),
    ("POST", "/predict", _raw(json.dumps({"project": "1" * 5000, "tasks": [{"data": {}}]})), 400, "project must be"),
    ("POST", "/jobs", _raw(json.dumps({"project": "²", "kind": "predict"})), 400, "project must be"),
    ("POST", "/jobs", _raw(json.dumps({"project": 1, "tasks": ["١٢"]})), 400, "'tasks' entry must be"),
    ("POST", "/jobs", _raw(json.dumps({"project": 1, "tasks": ["7" * 5000]})), 400, "'tasks' entry must be"),
    ("POST", "/jobs/²/cancel", None, 400, "job id must be"),
    ("POST", f"/jobs/{'8' * 5000}/cancel", None, 400, "job id must be"),
    ("GET", "/jobs?project=١٢", None, 400, "'project' must be a whole number"),
    ("GET", f"/events?project={'5' * 5000}", None, 400, "'project'"),
    ("GET", "/versions?project=²", None, 400, "'project'"),
    ("POST", "/versions/activate", _raw(json.dumps({"project": 1, "version": "v0001\n", "kind": "detector"})),
     400, "'version' must be a version name"),
    ("POST", "/versions/activate", _raw(json.dumps({"project": 1, "version": "v٠٠٠١", "kind": "detector"})),
     400, "'version' must be a version name"),
]


@pytest.mark.parametrize("method,path,body,status,message", CASES)
def test_hostile_request_gets_a_clear_4xx(client, method, path, body, status, message):
    response = client.open(path, method=method, data=body, content_type="application/json")
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert message in response.get_json()["error"]
    assert " at 0x" not in response.get_json()["error"]
    assert client.get("/health").status_code == 200


def test_webhook_with_huge_ids_is_a_hint_not_an_error(client):
    body = {"action": "ANNOTATION_CREATED", "project": {"id": int(HUGE)}, "annotation": {"id": int(HUGE), "task": -1}}
    response = client.post("/webhook", json=body)
    assert response.status_code == 200 and response.get_json()["project"] is None


def test_body_over_the_limit_is_refused(client):
    response = client.post("/predict", data=b"x" * (40 * 1024 * 1024), content_type="application/json")
    assert response.status_code == 413 and "larger than 32 MiB" in response.get_json()["error"]


@pytest.mark.parametrize("config", [
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol0 "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol%d;" % (i - 1)) * 10}">' for i in range(1, 10))
    + ']><View><Image name="i" value="$i"/><RectangleLabels name="r" toName="i"><Label value="&lol9;"/>'
    '</RectangleLabels></View>',
    '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><View><Image name="i" value="$i"/>'
    '<RectangleLabels name="r" toName="i"><Label value="&xxe;"/></RectangleLabels></View>',
])
def test_xml_bombs_and_external_entities_are_refused(client, config):
    response = client.post("/setup", json={"project": 2, "schema": config})
    assert response.status_code == 400
    assert "root:" not in response.get_data(as_text=True)


@pytest.mark.parametrize("user,password", [("ü", "pw"), ("ls", "pässwörd"), ("ls\x00", "pw"), ("", ""), ("ls", "")])
def test_basic_auth_with_any_characters_is_a_401(make_settings, user, password):
    import base64

    app = create_app(make_settings(basic_auth_user="ls", basic_auth_pass="pw", run_jobs=False))
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    response = app.test_client().post("/setup", json={"schema": CONFIG}, headers={"Authorization": f"Basic {token}"})
    assert response.status_code == 401


def test_non_ascii_basic_auth_credentials_work(make_settings):
    import base64

    app = create_app(make_settings(basic_auth_user="lé", basic_auth_pass="mötley", run_jobs=False))
    token = base64.b64encode("lé:mötley".encode()).decode()
    response = app.test_client().post("/setup", json={"schema": CONFIG}, headers={"Authorization": f"Basic {token}"})
    assert response.status_code == 200


def test_every_parameter_has_a_range():
    from dataclasses import asdict

    def number(value):
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    numeric = {k for k, v in PredictParams().as_dict().items() if number(v)}
    numeric |= {TRAIN_PREFIX + k for k, v in asdict(TrainParams()).items() if number(v)}
    assert numeric - set(CHOICES) == set(RANGES)


def test_unique_webhook_actions_do_not_grow_metrics_or_events(client):
    before_metrics = len(client.get("/metrics").get_data())
    before_events = len(client.get("/events?limit=1000").get_json()["events"])
    for i in range(200):
        response = client.post("/webhook", json={"action": f"{i}-" + "x" * 100_000, "project": {"id": 1}})
        assert response.status_code == 200 and response.get_json()["status"] == "ignored"
        assert len(response.get_json()["action"]) <= 64
    assert len(client.get("/metrics").get_data()) < before_metrics + 2000
    assert 'action="other"' in client.get("/metrics").get_data(as_text=True)
    assert len(client.get("/events?limit=1000").get_json()["events"]) == before_events


def test_events_table_is_bounded(tmp_path, monkeypatch):
    from backend.store import events as events_module
    from backend.store.database import Database

    monkeypatch.setattr(events_module, "MAX_EVENTS", 50)
    monkeypatch.setattr(events_module, "PRUNE_EVERY", 10)
    log = events_module.EventLog(Database(tmp_path / "s.sqlite"))
    for i in range(200):
        log.record("ANNOTATION_CREATED", 1, i, i)
    assert len(log.recent(1, 1000)) <= 60


def test_jobs_are_paginated(client):
    runtime = client.application.extensions["runtime"]
    for project in range(100, 130):
        runtime.context.jobs.enqueue(project, "train", "START_TRAINING")
    seen, before = [], None
    while True:
        page = client.get("/jobs", query_string={"limit": 7, **({"before": before} if before else {})}).get_json()
        seen += [job["id"] for job in page["jobs"]]
        before = page["next_before"]
        if before is None:
            break
    assert page["total"] == len(seen) >= 30 and seen == sorted(seen, reverse=True) and len(set(seen)) == len(seen)


@pytest.mark.parametrize("message,expected", [
    ("boom <lxml.etree._Element object at 0x7f3a2b1c9d80>", "boom <lxml.etree._Element object>"),
    ("fine", "fine"),
    ("x" * 3000, "x" * 2000 + "…"),
])
def test_error_messages_carry_no_addresses(message, expected):
    assert clean_message(message) == expected


def test_no_secret_in_any_answer(client):
    client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}})
    for path in ("/health", "/metrics", "/events", "/jobs", "/versions?project=1", "/openapi.json", "/versions"):
        assert TOKEN not in client.get(path).get_data(as_text=True), path
    assert "pw" not in client.get("/health").get_data(as_text=True)
