"""Project classifier fine-tuned from Choices annotations read back from a real Label Studio, then used
by the LIME pipeline (CLASSIFIER_MODEL=<its directory>)."""

import io

import numpy as np
import pytest
import requests
import torch
from label_studio_sdk.client import LabelStudio
from PIL import Image
from skimage import data

from backend.adapters.base import LazyModel
from backend.adapters.classifier import build_classifier
from backend.core.params import PredictParams
from backend.labelstudio.client import LabelStudioConnection
from backend.labelstudio.config import parse_label_config
from backend.labelstudio.image_cache import DiskCache
from backend.labelstudio.images import ImageFetcher, ImageLimits
from backend.pipelines.lime_boxes import LimeBoxesPipeline
from backend.training.classifier import train_project_classifier
from backend.labelstudio.api import export_tasks

pytestmark = pytest.mark.e2e
CONFIG = """<View>
  <Image name="image" value="$image"/>
  <Choices name="category" toName="image"><Choice value="kitty"/><Choice value="coffee"/></Choices>
  <RectangleLabels name="box" toName="image"><Label value="kitty"/><Label value="coffee"/></RectangleLabels>
</View>"""


def variants(image: np.ndarray, count: int) -> list[np.ndarray]:
    """Crops, mirror images and brightness changes of one photo."""
    rng = np.random.default_rng(len(image))
    h, w = image.shape[:2]
    out = []
    for i in range(count):
        y0, x0 = rng.integers(0, h // 5), rng.integers(0, w // 5)
        crop = image[y0:y0 + h * 4 // 5, x0:x0 + w * 4 // 5]
        crop = crop[:, ::-1] if i % 2 else crop
        out.append(np.clip(crop * rng.uniform(0.7, 1.2), 0, 255).astype(np.uint8))
    return out


def test_fine_tune_from_choices_and_serve(label_studio, tmp_path):
    ls = LabelStudio(base_url=label_studio.url, api_key=label_studio.token)
    project = ls.projects.create(title="e2e project classifier", label_config=CONFIG)
    files, labels = {}, {}
    for label, photo in (("kitty", data.chelsea()), ("coffee", data.coffee())):
        for i, image in enumerate(variants(photo, 6)):
            buf = io.BytesIO()
            Image.fromarray(image).save(buf, format="PNG")
            files[f"{label}{i}"] = (f"{label}{i}.png", buf.getvalue(), "image/png")
    response = requests.post(f"{label_studio.url}/api/projects/{project.id}/import", files=files,
                             headers={"Authorization": f"Token {label_studio.token}"}, timeout=60)
    assert response.status_code == 201, response.text
    for task in ls.tasks.list(project=project.id):
        label = "kitty" if "kitty" in task.data["image"] else "coffee"
        labels[task.id] = label
        ls.annotations.create(id=task.id, result=[{"from_name": "category", "to_name": "image", "type": "choices",
                                                   "value": {"choices": [label]}}])
    cancelled = next(iter(labels))  # a cancelled annotation never counts
    ls.annotations.create(id=cancelled, was_cancelled=True, result=[
        {"from_name": "category", "to_name": "image", "type": "choices", "value": {"choices": ["coffee"]}}])

    connection = LabelStudioConnection(label_studio.url, label_studio.token)
    fetcher = ImageFetcher(connection, ImageLimits(10_000_000, 50_000_000, 20), DiskCache(tmp_path / "c", 0))
    out = tmp_path / "classifier"
    metrics = train_project_classifier(export_tasks(connection, project.id), fetcher, project.id, out)
    assert metrics["classes"] == ["coffee", "kitty"] and metrics["n_train"] + (
        metrics["n_eval"] if metrics["evaluated_on"] == "held-out" else 0) == 12
    assert metrics["accuracy"] == 1.0

    classifier = build_classifier(str(out), "cpu", tmp_path / "onnx")
    assert classifier.class_names == ("coffee", "kitty")
    pipeline = LimeBoxesPipeline(LazyModel("classifier", str(out), lambda: classifier))
    onto = parse_label_config(CONFIG)
    cat, cup = pipeline.predict([data.chelsea(), data.coffee()], onto, PredictParams(num_samples=128))
    assert set(cat.labels) == {"kitty"} and "kitty" not in cup.labels
    x = torch.from_numpy(np.stack([data.chelsea()[:, :400], data.coffee()[:300, :400]])).permute(0, 3, 1, 2) / 255.0
    x = torch.nn.functional.interpolate(x.float(), size=(224, 224), mode="bilinear", antialias=True)
    assert classifier.probabilities(x).argmax(dim=1).tolist() == [1, 0]  # kitty, coffee


def test_start_training_makes_a_new_served_version(label_studio, backend):
    """Annotations → "Start training" (START_TRAINING webhook) → job trains on CPU → new version active →
    the next predictions carry its model_version."""
    import time

    ls = LabelStudio(base_url=label_studio.url, api_key=label_studio.token)
    project = ls.projects.create(title="e2e retrain", label_config=CONFIG)
    ml = ls.ml.create(project=project.id, url=backend.url, title="autolabel", extra_params={"num_samples": 64})
    files = {}
    for label, photo in (("kitty", data.chelsea()), ("coffee", data.coffee())):
        for i, image in enumerate(variants(photo, 6)):
            buf = io.BytesIO()
            Image.fromarray(image).save(buf, format="PNG")
            files[f"{label}{i}"] = (f"{label}{i}.png", buf.getvalue(), "image/png")
    requests.post(f"{label_studio.url}/api/projects/{project.id}/import", files=files,
                  headers={"Authorization": f"Token {label_studio.token}"}, timeout=60).raise_for_status()
    tasks = list(ls.tasks.list(project=project.id))
    for task in tasks:
        label = "kitty" if "kitty" in task.data["image"] else "coffee"
        ls.annotations.create(id=task.id, result=[{"from_name": "category", "to_name": "image", "type": "choices",
                                                   "value": {"choices": [label]}}])
    asked = time.time()
    ls.ml.train(id=ml.id)  # START_TRAINING: runs a job now, or joins the pending one
    deadline, jobs = time.monotonic() + 180, []
    while time.monotonic() < deadline:
        jobs = requests.get(f"{backend.url}/jobs", params={"project": project.id}, timeout=5).json()["jobs"]
        busy = [j for j in jobs if j["status"] in ("pending", "running")]
        if jobs and not busy and (jobs[0]["finished_at"] or 0) >= asked:
            break
        time.sleep(0.5)
    assert jobs and jobs[0]["status"] == "done", (jobs, backend.log.read_text()[-3000:])
    versions = requests.get(f"{backend.url}/versions", params={"project": project.id}, timeout=5).json()
    assert versions["active"]["classifier"] is not None and versions["active"]["detector"] is None
    label = f"lime-project{project.id}-classifier-{versions['active']['classifier']}"

    # one task, as an admin checking a new version would: a request for all 12 can exceed /predict's deadline on
    # a loaded machine (the measured speed, 7.75 s per image once in CI, makes it refuse with a 4xx naming it)
    ls.actions.create(id="retrieve_tasks_predictions", project=project.id,
                      selected_items={"all": False, "included": [tasks[0].id]})
    predictions = ls.predictions.list(task=tasks[0].id)
    assert predictions and predictions[-1].model_version == label, backend.log.read_text()[-3000:]
    expected = "kitty" if "kitty" in tasks[0].data["image"] else "coffee"
    choices = [r for r in predictions[-1].result if r["type"] == "choices"]
    assert choices and choices[0]["value"]["choices"] == [expected]
