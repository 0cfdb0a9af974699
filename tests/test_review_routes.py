"""`/review`, `/review.json` and `/review/refresh` through Flask's test client: a loopback peer serves a project's
Label Studio export and its real photos (skimage.data), the `review` job runs through the real job runner with
EfficientNet-Lite0 features, and the cached report and page are served; bad input gets a 4xx naming the problem."""

import json
import re
import time
from datetime import datetime, timedelta, timezone

import pytest
from skimage import data

from backend.core.settings import Settings
from backend.jobs.review import out_of_sample_rule, read_cached_report, report_path, save_report
from backend.jobs.runner import JobRunner
from backend.registry.versions import DETECTOR, Registry
from backend.review.export import read_export
from backend.review.report import build_report
from backend.service.app import create_app
from tests.conftest import FilePeer, png_bytes
from tests.review_fixtures import photo_project, prediction, regions, task, ONTOLOGY

CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
          '<Label value="cat"/><Label value="cup"/></RectangleLabels></View>')
PROJECT, BROKEN = 7, 8


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """(client, peer, run_jobs()): project 7 with a served export of 25 tasks on two real photos, project 8 set up
    but its export answers 404. `run_jobs()` runs every pending job in this process (the in-process runner's
    code) and returns how many ran."""
    peer = FilePeer()
    photos = {"chelsea": png_bytes(data.chelsea()), "coffee": png_bytes(data.coffee())}
    for name, body in photos.items():
        peer.routes[f"/data/upload/7/{name}.png"] = (200, body, {"Content-Type": "image/png"})
    export, _, _ = photo_project()
    for t in export:
        t["data"]["image"] = t["data"]["image"].replace("skimage://", "/data/upload/7/") + ".png"
    predictions = [{**p, "task": t["id"]} for t in export for p in t["predictions"]]
    for t in export:  # as Label Studio 1.23 exports them: prediction ids only, the objects from /api/predictions
        t["predictions"] = [p["id"] for p in t["predictions"]]
    export_path = f"/api/projects/{PROJECT}/export?exportType=JSON&download_all_tasks=true"
    peer.routes[export_path] = (200, json.dumps(export).encode(), {"Content-Type": "application/json"})
    peer.routes[f"/api/predictions?project={PROJECT}"] = (200, json.dumps(predictions).encode(),
                                                          {"Content-Type": "application/json"})
    settings = Settings(model_dir=tmp_path_factory.mktemp("models"), preload_models=False, device="cpu",
                        run_jobs=False, label_studio_url=peer.url, label_studio_api_key="0" * 40)
    app = create_app(settings)
    client = app.test_client()
    for project in (PROJECT, BROKEN):
        assert client.post("/setup", json={"project": project, "schema": CONFIG,
                                    "extra_params": {"auto_predict": False}}).status_code == 200
    runtime = app.extensions["runtime"]

    def run_jobs() -> int:
        runner = JobRunner(runtime.context.jobs, runtime.context.handlers())
        ran = 0
        while runner.run_once():
            ran += 1
        return ran

    yield client, peer, run_jobs
    peer.close()


BAD = [("", 400, "'project' is required"), ("?project=", 400, "'project' is required"),
       ("?project=abc", 400, "project must be"), ("?project=1.5x", 400, "project must be"),
       ("?project=0", 400, "between 1 and"), ("?project=-4", 400, "project must be"),
       ("?project=99999999999999999999999", 400, "between 1 and"),
       ("?project=42", 404, "project 42 is not set up")]


@pytest.mark.parametrize("method,path", [("GET", "/review"), ("GET", "/review.json"), ("POST", "/review/refresh")])
@pytest.mark.parametrize("query,status,message", BAD)
def test_bad_input_gets_a_4xx_naming_the_problem(env, method, path, query, status, message):
    client, _, _ = env
    response = client.open(path + query, method=method)
    assert response.status_code == status
    assert message in response.get_json()["error"]


def test_computing_then_cached_page_and_report(env):
    client, peer, run_jobs = env
    first = client.get(f"/review.json?project={PROJECT}")
    assert first.status_code == 202 and first.get_json()["status"] == "computing"
    job = first.get_json()["job"]
    page = client.get(f"/review?project={PROJECT}")  # the same job: a reloading page never queues another
    assert page.status_code == 202 and page.mimetype == "text/html"
    text = page.get_data(as_text=True)
    assert '<meta http-equiv="refresh"' in text and f'data-job="{job}"' in text and "being computed" in text
    assert [j["id"] for j in client.get(f"/jobs?project={PROJECT}").get_json()["jobs"]] == [job]

    assert run_jobs() == 1
    finished = client.get(f"/jobs?project={PROJECT}").get_json()["jobs"][0]
    assert finished["status"] == "done", finished["message"]
    report = client.get(f"/review.json?project={PROJECT}")
    assert report.status_code == 200
    body = report.get_json()
    assert body["status"] == "ready" and body["job"] == job and body["computed_in_s"] > 0
    assert (body["counts"]["tasks"], body["counts"]["annotations"], body["counts"]["regions"]) == (25, 24, 28)
    assert body["embedding"]["n_embedded"] == 28 and body["embedding"]["feature_dim"] == 1280
    assert body["suspicious"]["n_tasks_out_of_sample"] == 24  # LIME-like versions "v1"/"v2": zero-shot
    assert body["suspicious"]["entries"]
    for entry in body["suspicious"]["entries"]:
        assert entry["link"] == f"{peer.url}/projects/{PROJECT}/data?task={entry['task_id']}"
    assert {e["task_id"] for e in body["suspicious"]["entries"] if e["kind"] == "possibly_swapped"} == {6, 12, 18, 24}

    started = time.perf_counter()
    page = client.get(f"/review?project={PROJECT}")
    assert time.perf_counter() - started < 1.0
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert html.count("<svg") >= 5 and 'id="plot-embedding"' in html and 'id="plot-routing"' in html
    age = re.search(r"computed (\d+) s ago", html)  # the report's age at serving time (seconds on a busy CPU)
    assert age and int(age.group(1)) < 120, html[:2000]
    assert "<script src" not in html and "<link" not in html  # self-contained: works offline
    assert f'href="{peer.url}/projects/{PROJECT}/data?task=6"' in html
    assert f'data-refresh-url="/review/refresh?project={PROJECT}"' in html


def test_the_page_shows_the_report_age(env):
    client, _, _ = env
    model_dir = client.application.extensions["runtime"].settings.model_dir
    report = read_cached_report(model_dir, PROJECT) or pytest.skip("needs the cached report of the test above")
    earlier = datetime.now(timezone.utc) - timedelta(hours=3)
    save_report(model_dir, PROJECT, {**report, "generated_at": earlier.isoformat(timespec="seconds")})
    html = client.get(f"/review?project={PROJECT}").get_data(as_text=True)
    assert "computed 3 h ago" in html and f'data-generated-at="{earlier.isoformat(timespec="seconds")}"' in html


def test_refresh_queues_a_job_and_the_cached_page_says_so(env):
    client, _, run_jobs = env
    before = client.get(f"/review.json?project={PROJECT}").get_json()
    response = client.post(f"/review/refresh?project={PROJECT}")
    assert response.status_code == 202
    job = response.get_json()["job"]
    assert response.get_json()["created"] is True
    again = client.post(f"/review/refresh?project={PROJECT}").get_json()
    assert (again["job"], again["created"]) == (job, False)  # coalesced with the pending one
    served = client.get(f"/review.json?project={PROJECT}").get_json()
    assert served["refreshing"] == job and served["generated_at"] == before["generated_at"]
    assert "A new report is being computed" in client.get(f"/review?project={PROJECT}").get_data(as_text=True)
    assert run_jobs() == 1
    after = client.get(f"/review.json?project={PROJECT}").get_json()
    assert after["job"] == job and "refreshing" not in after and after["generated_at"] != before["generated_at"]


def test_a_failed_job_is_shown_and_not_retried_until_asked(env):
    client, _, run_jobs = env
    assert client.get(f"/review?project={BROKEN}").status_code == 202
    assert run_jobs() == 1
    failed = client.get(f"/review.json?project={BROKEN}")
    assert failed.status_code == 503 and failed.get_json()["status"] == "failed"
    assert "export of project 8 failed: HTTP 404" in failed.get_json()["error"]
    page = client.get(f"/review?project={BROKEN}")
    assert page.status_code == 503 and 'id="retry"' in page.get_data(as_text=True)
    assert run_jobs() == 0  # reloading the failure page queued nothing
    assert client.post(f"/review/refresh?project={BROKEN}").status_code == 202
    assert client.get(f"/review.json?project={BROKEN}").status_code == 202


def test_a_cached_5000_task_report_opens_in_well_under_10_s(env, tmp_path):
    """Serving reads two cached files and edits the age text: a 5,000-task report opens in milliseconds."""
    client, peer, _ = env
    export = []
    for t in range(1, 5001):
        box = [[10 + t % 50, 10, 120, 90]]
        predicted = regions(box, ["cat" if t % 7 else "dog"], scores=[0.5 + (t % 10) / 20])
        export.append(task(t, regions(box, ["cat"]), [prediction(predicted)]))
    report = build_report(export, ONTOLOGY, peer.url, 11, out_of_sample=lambda *_: True)
    model_dir = client.application.extensions["runtime"].settings.model_dir
    save_report(model_dir, 11, {**report, "job": 0, "computed_in_s": 1.0})
    assert client.post("/setup", json={"project": 11, "schema": CONFIG}).status_code == 200
    started = time.perf_counter()
    page, body = client.get("/review?project=11"), client.get("/review.json?project=11")
    elapsed = time.perf_counter() - started
    assert page.status_code == body.status_code == 200 and body.get_json()["counts"]["tasks"] == 5000
    assert report_path(model_dir, 11).stat().st_size > 0
    assert elapsed < 2.0, elapsed


def test_out_of_sample_rule_follows_the_registry(tmp_path):
    """Zero-shot versions are always out of sample; a trained version is out of sample for annotations made after
    it was committed and for its held-out tasks, in sample for the tasks it trained on."""
    registry = Registry(tmp_path)
    with registry.staging(3, DETECTOR) as staging:
        version = registry.commit(staging, 3, DETECTOR, {"evaluated_on": "held-out"})
    committed = datetime.fromtimestamp(version.metrics["created_at"], timezone.utc)
    before, after = (committed - timedelta(days=1)).isoformat(), (committed + timedelta(days=1)).isoformat()
    from backend.training.dataset import is_held_out

    trained_on = next(i for i in range(1, 100) if not is_held_out(i))
    held_out = next(i for i in range(1, 100) if is_held_out(i))
    box = regions([[10, 10, 90, 90]], ["cat"])
    exported = [task(trained_on, box, [prediction(box, version.model_version, created=after)], created=before),
                task(held_out, box, [prediction(box, version.model_version, created=after)], created=before),
                task(200, box, [prediction(box, version.model_version, created=after)], created=after),
                task(201, box, [prediction(box, "lime-efficientnet-lite0", created=after)], created=before),
                task(202, box, [prediction(box, "project3-detector-v0099", created=after)], created=before)]
    rule = out_of_sample_rule(registry, 3)
    verdicts = [rule(t, t.predictions[0]) for t in read_export(exported, ONTOLOGY)]
    assert verdicts == [False, True, True, True, False]  # v0099 is unknown: made after the annotation → False
