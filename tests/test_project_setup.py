"""Connect = ready, the pure parts: which Label Studio project settings the backend writes (the rule that never
overrides the admin), which labels a pipeline can pre-label and the fix for the others, the HTTP status line that
carries a message into Label Studio's UI, and Label Studio's reasons in our errors."""

import pytest
import requests

from backend.core.ontology import Control, Ontology
from backend.jobs.project_setup import SEQUENTIAL, UNCERTAINTY, settings_changes
from backend.labelstudio.client import LabelStudioConnection, failure_reason
from backend.labelstudio.status import AUTH_FAILED, NOT_CONFIGURED, OK, UNREACHABLE, LabelStudioStatus, check
from backend.pipelines.coverage import Coverage, mapped_by_classes, with_learning
from backend.pipelines.label_mapping import class_groups
from backend.models.imagenet import imagenet_class_names
from backend.service.app import status_line

OURS, OLD, TITLE = "lime-efficientnet-lite0", "project3-detector-v0001", "autolabel"

SETTINGS_CASES = [
    # (current project, managed before, task_order, changes written); the project has predictions of OURS
    ("fresh project, nothing set", {"model_version": "", "sampling": SEQUENTIAL}, {}, "uncertainty",
     {"model_version": OURS, "sampling": UNCERTAINTY}),
    ("Connect set the model's name", {"model_version": TITLE, "sampling": SEQUENTIAL}, {}, "uncertainty",
     {"model_version": OURS, "sampling": UNCERTAINTY}),
    ("already ours", {"model_version": OURS, "sampling": UNCERTAINTY}, {"model_version": OURS,
                                                                        "sampling": UNCERTAINTY}, "uncertainty", {}),
    ("a new version became active", {"model_version": OLD, "sampling": UNCERTAINTY},
     {"model_version": OLD, "sampling": UNCERTAINTY}, "uncertainty", {"model_version": OURS}),
    ("admin picked another version", {"model_version": "imported-v7", "sampling": UNCERTAINTY},
     {"model_version": OLD, "sampling": UNCERTAINTY}, "uncertainty", {}),
    ("admin picked the live model again", {"model_version": TITLE, "sampling": UNCERTAINTY},
     {"model_version": OURS, "sampling": UNCERTAINTY}, "uncertainty", {"model_version": OURS}),
    ("admin went back to sequential", {"model_version": OURS, "sampling": SEQUENTIAL},
     {"model_version": OURS, "sampling": UNCERTAINTY}, "uncertainty", {}),
    ("admin chose random before we looked", {"model_version": "", "sampling": "Uniform sampling"}, {},
     "uncertainty", {"model_version": OURS}),
    ("task_order keep", {"model_version": "", "sampling": SEQUENTIAL}, {}, "keep", {"model_version": OURS}),
]


@pytest.mark.parametrize("case, current, managed, task_order, expected", SETTINGS_CASES, ids=[c[0] for c in SETTINGS_CASES])
def test_label_studio_settings_rule(case, current, managed, task_order, expected):
    assert settings_changes(current, managed, OURS, [OURS, OLD], [TITLE], task_order) == expected


JOB_NOT_COMPLETE_CASES = [
    # (current project, managed before, predicted versions, changes written while the job predicting OURS runs)
    ("a served version stays until the new one covers the tasks", {"model_version": OLD, "sampling": UNCERTAINTY},
     {"model_version": OLD}, [OURS, OLD], {}),
    ("nothing served yet: the first chunk shows at once", {"model_version": "", "sampling": UNCERTAINTY}, {},
     [OURS], {"model_version": OURS}),
    ("Connect's model name: switched at once", {"model_version": TITLE, "sampling": UNCERTAINTY},
     {"model_version": OLD}, [OURS, OLD], {"model_version": OURS}),
    ("the served version lost its predictions", {"model_version": OLD, "sampling": UNCERTAINTY},
     {"model_version": OLD}, [OURS], {"model_version": OURS}),
]


@pytest.mark.parametrize("case, current, managed, predicted, expected", JOB_NOT_COMPLETE_CASES,
                         ids=[c[0] for c in JOB_NOT_COMPLETE_CASES])
def test_served_version_kept_until_the_new_one_is_complete(case, current, managed, predicted, expected):
    """A re-prediction job switches the project's version at its end, not after its first chunk: Label Studio shows
    only the project version's predictions, so an early switch leaves the tasks not yet reached without a pre-label."""
    assert settings_changes(current, managed, OURS, predicted, [TITLE], "keep", complete=False) == expected
    assert settings_changes(current, managed, OURS, predicted, [TITLE], "keep") == {"model_version": OURS}


def test_no_model_version_before_label_studio_has_predictions_of_it():
    """Label Studio refuses a project model_version that neither predictions nor a connected model carry."""
    current = {"model_version": TITLE, "sampling": SEQUENTIAL}
    assert settings_changes(current, {}, OURS, [], [TITLE], "uncertainty") == {"sampling": UNCERTAINTY}
    assert settings_changes(current, {"sampling": UNCERTAINTY}, OURS, [OLD], [TITLE], "uncertainty") == {}


def ontology(*controls: tuple[str, tuple[str, ...]], class_names=None) -> Ontology:
    return Ontology(tuple(Control(f"c{i}", tag, "image", "image", labels) for i, (tag, labels) in enumerate(controls)),
                    class_names=class_names or {})


IMAGENET = imagenet_class_names()
COVERAGE_CASES = [
    # (ontology, predicted labels, missing labels)
    (ontology(("RectangleLabels", ("cat", "cup"))), ["cat", "cup"], []),
    (ontology(("RectangleLabels", ("cat", "person"))), ["cat"], ["person"]),
    (ontology(("RectangleLabels", ("pothole",))), [], ["pothole"]),
    (ontology(("RectangleLabels", ("pothole",)), class_names={"pothole": ("manhole cover",)}), ["pothole"], []),
    (ontology(("Choices", ("tabby", "spaceship"))), ["tabby"], ["spaceship"]),
]


@pytest.mark.parametrize("onto, predicted, missing", COVERAGE_CASES)
def test_classifier_coverage(onto, predicted, missing):
    groups = class_groups(onto.labels, IMAGENET, onto.class_names)
    coverage = mapped_by_classes(onto, groups, IMAGENET, "efficientnet-lite0", OURS)
    assert list(coverage.predicted) == predicted and list(coverage.missing) == missing
    assert coverage.nothing_predicted == (not predicted)
    for label in missing:
        assert "predicted_values" in coverage.missing[label] and f'"{label}"' in coverage.missing[label]
    if missing:
        assert ("no label of this config" in coverage.message()) == (not predicted)


def test_missing_labels_name_what_the_project_learns_them_with():
    onto = ontology(("RectangleLabels", ("person",)), ("Choices", ("indoor",)))
    coverage = with_learning(Coverage(OURS, {}, {"person": "no class", "indoor": "no class"}), onto, 10)
    assert "project's detector learns it once the project has 10 annotations" in coverage.missing["person"]
    assert "project's classifier learns it" in coverage.missing["indoor"]
    assert Coverage.from_dict(coverage.as_dict()) == coverage


@pytest.mark.parametrize("status, message, line", [
    (503, "Label Studio at http://ls:8080: auth failed", "503 Label Studio at http://ls:8080: auth failed"),
    (400, 'label "pothole": no class\nmatches — use predicted_values on <Label> …', '400 label "pothole": no class '
                                                                              'matches - use predicted_values on '
                                                                              '(Label) ...'),
    (400, "données ≥ 2", "400 donn?es >= 2"),
    (400, "", "400 Error"),
    (503, "word " * 300, "503 " + " ".join(["word"] * 200) + " ..."),
])
def test_status_line_carries_the_message(status, message, line):
    assert status_line(status, message) == line


def response(status: int, body: bytes, content_type="application/json") -> requests.Response:
    r = requests.Response()
    r.status_code, r._content, r.headers["content-type"] = status, body, content_type
    return r


@pytest.mark.parametrize("status, body, words", [
    (401, b'{"detail": "Authentication token no longer valid: legacy token authentication has been disabled for '
          b'this organization"}', ["HTTP 401", "legacy token authentication has been disabled",
                                   "use a Personal Access Token"]),
    (401, b'{"detail": "Invalid token."}', ["HTTP 401: Invalid token. Check LABEL_STUDIO_API_KEY"]),
    (404, b'{"detail": "Not found."}', ["HTTP 404: Not found"]),
    (500, b"<html>boom</html>", ["HTTP 500"]),
])
def test_failure_reason_keeps_label_studios_words(status, body, words):
    reason = failure_reason(response(status, body, "text/html" if body.startswith(b"<") else "application/json"))
    for word in words:
        assert word in reason, reason
    assert "<html>" not in reason


def test_label_studio_status_states(peer):
    assert check(LabelStudioConnection("", "")).state == NOT_CONFIGURED
    assert check(LabelStudioConnection(peer.url, "0" * 40)).state == OK
    peer.routes["/api/current-user/whoami"] = (401, b'{"detail": "Authentication token no longer valid: legacy '
                                                    b'token authentication has been disabled"}', {})
    report = check(LabelStudioConnection(peer.url, "0" * 40))
    assert report.state == AUTH_FAILED and "Personal Access Token" in report.detail
    assert check(LabelStudioConnection(peer.url, "bad.jwt.token")).state == AUTH_FAILED  # refresh refused
    assert check(LabelStudioConnection("http://127.0.0.1:9", "0" * 40), timeout_s=2).state == UNREACHABLE


def test_label_studio_status_is_cached_and_refreshed_in_the_background(peer):
    status = LabelStudioStatus(LabelStudioConnection(peer.url, "0" * 40), max_age_s=60)
    assert status.current().state == "unknown"  # never blocks: the first check starts in the background
    for _ in range(100):
        if status.current().state == OK:
            break
        import time
        time.sleep(0.05)
    assert status.current().state == OK
    calls = sum(path == "/api/current-user/whoami" for path, _ in peer.requests)
    for _ in range(20):
        status.current()
    assert sum(path == "/api/current-user/whoami" for path, _ in peer.requests) == calls  # cached for a minute


def test_setup_answers_503_with_the_reason_in_the_status_line_while_the_token_fails(peer, make_settings):
    from backend.service.app import create_app

    peer.routes["/api/current-user/whoami"] = (401, b'{"detail": "Invalid token."}', {})
    app = create_app(make_settings(run_jobs=False, label_studio_url=peer.url, label_studio_api_key="f" * 40))
    client = app.test_client()
    runtime = app.extensions["runtime"]
    runtime.context.label_studio.refresh()
    config = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
              '<Label value="cat"/></RectangleLabels></View>')
    response = client.post("/setup", json={"project": 4, "schema": config})
    assert response.status_code == 503
    assert response.status.startswith("503 Label Studio at ") and "auth failed: HTTP 401: Invalid token" in response.status
    assert "LABEL_STUDIO_API_KEY" in response.get_json()["error"]
    health = client.get("/health").get_json()
    assert health["status"] == "UP" and health["label_studio"]["state"] == AUTH_FAILED
    peer.routes["/api/current-user/whoami"] = (200, b"{}", {})
    runtime.context.label_studio.refresh()
    assert client.post("/setup", json={"project": 4, "schema": config}).status_code == 200


def test_setup_reports_a_failed_predict_job_then_retries_it(make_settings, monkeypatch):
    from backend.service import setup as setup_module
    from backend.service.app import create_app

    app = create_app(make_settings(run_jobs=False))
    client, runtime = app.test_client(), app.extensions["runtime"]
    config = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
              '<Label value="pothole"/></RectangleLabels></View>')
    assert client.post("/setup", json={"project": 5, "schema": config}).status_code == 200
    (job,) = runtime.context.jobs.jobs(5)
    runtime.context.jobs.claim()
    runtime.context.jobs.finish(job["id"], "failed", 'no label of this config can be pre-labelled yet: "pothole": …')
    assert client.post("/setup", json={"project": 5, "schema": config}).status_code == 200  # Connect's grace
    monkeypatch.setattr(setup_module, "CONNECT_GRACE_S", 0.0)
    response = client.post("/setup", json={"project": 5, "schema": config})
    assert response.status_code == 503 and '"pothole"' in response.status and f"job {job['id']}" in response.status
    monkeypatch.setattr(setup_module, "RETRY_AFTER_S", 0.0)  # old enough: retried, and fine while it runs
    assert client.post("/setup", json={"project": 5, "schema": config}).status_code == 200
    assert [(j["trigger"], j["status"]) for j in runtime.context.jobs.jobs(5)] == [("RETRY", "pending"), ("SETUP", "failed")]


class _Fallback:
    name = "lime"
    model_version = "lime-efficientnet-lite0"

    def coverage(self, ontology, params):
        known = {"cat"}
        return Coverage(self.model_version, {l: "classes" for l in ontology.labels if l in known},
                        {l: "no class matches it" for l in ontology.labels if l not in known})


@pytest.mark.parametrize("controls, classes, fallback_labels, predicted, missing", [
    ([("RectangleLabels", ("blob", "cat", "pothole"))], ("blob",), ("cat", "pothole"), ["blob", "cat"], ["pothole"]),
    ([("VideoRectangle", ("car", "bus"))], ("car",), (), ["car"], ["bus"]),  # video labels: the detector's classes
    ([("RectangleLabels", ("blob",)), ("Choices", ("indoor",))], ("blob",), (), ["blob"], ["indoor"]),
])
def test_trained_detector_coverage(controls, classes, fallback_labels, predicted, missing):
    from backend.adapters.base import LazyModel
    from backend.core.params import PredictParams
    from backend.pipelines.trained import TrainedDetectorPipeline

    pipeline = TrainedDetectorPipeline(LazyModel("detector", "v", lambda: None), "project1-detector-v0001",
                                       LazyModel("sam", "none", lambda: None), _Fallback(), fallback_labels, classes)
    coverage = pipeline.coverage(ontology(*controls), PredictParams())
    assert sorted(coverage.predicted) == sorted(predicted) and sorted(coverage.missing) == sorted(missing)


def _queue(tmp_path):
    from types import SimpleNamespace

    from backend.jobs.queue import JobQueue
    from backend.store.database import Database

    return SimpleNamespace(jobs=JobQueue(Database(tmp_path / "state.sqlite")))


COMPLETE_CASES = [
    # (case, jobs of project 1: (options, final status or None while pending, result's model_version), complete)
    ("never predicted", [], False),
    ("a full job done with the version", [({}, "done", OURS)], True),
    ("a full job of another version", [({}, "done", OLD)], False),
    ("a job over listed tasks only", [({"tasks": [1, 2]}, "done", OURS)], False),
    ("the full job was cancelled", [({}, "cancelled", OURS)], False),
    ("the full job failed", [({}, "failed", OURS)], False),
    ("done, then another pending", [({}, "done", OURS), ({"tasks": [3]}, None, None)], False),
]


@pytest.mark.parametrize("case, jobs, complete", COMPLETE_CASES, ids=[c[0] for c in COMPLETE_CASES])
def test_version_complete(tmp_path, case, jobs, complete):
    """`/setup`'s follow-up replaces a shown version of ours only once a job over every task finished with the new
    one (Label Studio calls /setup after every annotation, also while a predict job runs or after it stopped)."""
    from backend.jobs.project_setup import version_complete

    context = _queue(tmp_path)
    context.jobs.enqueue(2, "predict", "other project", {})  # another project's running job changes nothing
    context.jobs.claim()
    for options, status, version in jobs:
        job_id, _ = context.jobs.enqueue(1, "predict", "test", options)
        if status is not None:
            context.jobs.claim(job_id)
            context.jobs.finish(job_id, status, "", {"model_version": version})
    assert version_complete(context, 1, OURS) is complete
