"""Per-label sources served end to end: a real Label Studio project whose images show a cat (which the offline
zero-shot pipeline, LIME over ImageNet, labels) and a yellow blob (which it cannot), annotated through the API. The
training job compares its detector with the zero-shot pipeline label by label on the same held-out tasks, by the
annotation time their pre-labels would take to correct; the version becomes active because it serves "blob" (zero-shot
has nothing for it); each label is then served in Label Studio by the source that won it, and `/versions` and
`/health` say which and why."""

import io
import time

import numpy as np
import pytest
import requests
from label_studio_sdk.client import LabelStudio
from PIL import Image
from skimage import data

from tests.e2e.servers import BackendServer

pytestmark = pytest.mark.e2e
CONFIG = """<View><Image name="image" value="$image"/>
<RectangleLabels name="box" toName="image"><Label value="cat"/><Label value="blob"/></RectangleLabels></View>"""
SIZE = (128, 96)
EXTRA = {"train_epochs": 30, "train_image_size": 128, "train_min_annotations": 12, "train_min_new": 12,
         "num_samples": 16, "superpixels": 8, "review_score": "confidence", "box_threshold": 0.05}


def _image(rng) -> tuple[bytes, list[float]]:
    """The cat photo (skimage's chelsea, slightly cropped) at SIZE with a yellow 24x18 blob; the blob's box in
    percent (x, y, w, h)."""
    photo = data.chelsea()
    x0, y0 = int(rng.integers(0, 40)), int(rng.integers(0, 30))
    image = np.asarray(Image.fromarray(photo[y0:y0 + 270, x0:x0 + 360]).resize(SIZE)).copy()
    x, y = int(rng.integers(4, SIZE[0] - 28)), int(rng.integers(4, SIZE[1] - 22))
    image[y:y + 18, x:x + 24] = (240, 220, 30)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue(), [x / SIZE[0] * 100, y / SIZE[1] * 100, 24 / SIZE[0] * 100, 18 / SIZE[1] * 100]


def _region(label, x, y, w, h):
    return {"from_name": "box", "to_name": "image", "type": "rectanglelabels", "original_width": SIZE[0],
            "original_height": SIZE[1],
            "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": [label]}}


@pytest.fixture(scope="module")
def sources_backend(label_studio, tmp_path_factory):
    server = BackendServer(tmp_path_factory.mktemp("sources-backend"), label_studio.url, label_studio.token)
    yield server
    server.stop()


def _jobs(backend, project_id):
    return requests.get(f"{backend.url}/jobs", params={"project": project_id}, timeout=10).json()["jobs"]


def _wait_idle(backend, project_id, timeout_s=600):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        jobs = _jobs(backend, project_id)
        if any(j["kind"] == "train" for j in jobs) and not any(j["status"] in ("pending", "running") for j in jobs):
            return jobs
        time.sleep(1)
    pytest.fail(f"jobs did not finish: {_jobs(backend, project_id)}\n{backend.log.read_text()[-3000:]}")


def test_each_label_is_served_by_the_source_that_won_it(label_studio, sources_backend):
    ls = LabelStudio(base_url=label_studio.url, api_key=label_studio.token)
    headers = {"Authorization": f"Token {label_studio.token}"}
    project = ls.projects.create(title="e2e label sources", label_config=CONFIG)
    rng = np.random.default_rng(5)
    files, blobs = {}, {}
    for i in range(16):
        png, box = _image(rng)
        files[f"f{i}"] = (f"catblob{i}.png", png, "image/png")
        blobs[f"catblob{i}.png"] = box
    requests.post(f"{label_studio.url}/api/projects/{project.id}/import", files=files, headers=headers,
                  timeout=120).raise_for_status()
    ls.ml.create(project=project.id, url=sources_backend.url, title="autolabel", extra_params=EXTRA)
    tasks = sorted(ls.tasks.list(project=project.id), key=lambda t: t.id)
    time.sleep(3)
    for task in tasks[:12]:  # the last four stay unlabelled: the new version re-predicts them
        box = blobs[task.data["image"].rsplit("/", 1)[-1].split("-", 1)[-1]]
        ls.annotations.create(id=task.id, result=[_region("cat", 2, 2, 96, 96), _region("blob", *box)])
    jobs = _wait_idle(sources_backend, project.id)
    (train,) = [j for j in jobs if j["kind"] == "train"]
    assert train["status"] == "done", train
    summary = train["result"]["detector"]

    versions = requests.get(f"{sources_backend.url}/versions", params={"project": project.id}, timeout=10).json()
    (version,) = [v for v in versions["trained"] if v["kind"] == "detector"]
    metrics = version["metrics"]
    # every label's source follows its held-out comparison by annotation time, stated with its figures
    covers = metrics["zero_shot"]["covers"]
    for label in ("cat", "blob"):
        effort = metrics["effort"]["per_class"][label]
        cheaper = metrics["evaluated_held_out"] and effort["detector_s"] < effort["zero_shot_s"]
        expected = "detector" if label not in covers or cheaper else "zero-shot"
        assert version["sources"][label]["source"] == expected, (label, metrics)
        assert "held-out" in version["sources"][label]["why"]
    assert covers == ["cat"]  # LIME over ImageNet knows cats, not blobs
    assert metrics["sources"]["blob"] == "detector"  # zero-shot cannot predict blobs at all
    assert summary["activated"] == (metrics["effort"]["served_s"] < metrics["effort"]["baseline_served_s"])
    if not summary["activated"]:
        pytest.fail(f"the detector's blobs did not save annotation time after 60 epochs: {metrics}")

    # Label Studio: the four unlabelled tasks were re-predicted by the new version, each label from its source
    zero_shot = metrics["zero_shot"]["model_version"]
    served = f"project{project.id}-detector-{version['version']}"
    if metrics["sources"]["cat"] == "zero-shot":
        served += f"+{zero_shot}"
    for task in tasks[12:]:
        predictions = requests.get(f"{label_studio.url}/api/predictions", params={"task": task.id}, headers=headers,
                                   timeout=30).json()
        latest = [p for p in predictions if p["model_version"] == served]
        assert latest, [p["model_version"] for p in predictions]
        labels = {r["value"]["rectanglelabels"][0] for r in latest[0]["result"]}
        assert labels <= {"cat", "blob"}
        if metrics["sources"]["cat"] == "zero-shot":  # the cat regions are exactly the zero-shot pipeline's
            setup = [p for p in predictions if p["model_version"] == zero_shot]
            assert setup, "the Connect's zero-shot prediction is kept"
            cats = lambda p: sorted((round(r["value"]["x"], 3), round(r["value"]["y"], 3))  # noqa: E731
                                    for r in p["result"] if r["value"]["rectanglelabels"] == ["cat"])
            assert cats(latest[0]) == cats(setup[0])
    health = requests.get(f"{sources_backend.url}/health", timeout=10).json()
    coverage = health["projects"][str(project.id)]["coverage"]
    assert "held-out" in coverage["predicted"]["blob"] and "held-out" in coverage["predicted"]["cat"]
    sources = health["projects"][str(project.id)]["label_sources"]
    assert sources["version"].startswith(f"project{project.id}-detector-") and set(sources["labels"]) == {"cat", "blob"}
