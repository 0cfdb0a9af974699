"""End-to-end against a real Label Studio 1.23: project from label_config.xml, uploads and local-files
storage, backend connected through the API, "retrieve predictions", predictions read back, webhook."""

import io
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from label_studio_sdk.client import LabelStudio
from PIL import Image
from skimage import data

from backend.core.detections import box_iou
from backend.labelstudio.results import results_to_detections

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
CAT_HEAD = np.array([[30, 0, 400, 300]], np.float32)  # chelsea: ears to chin, read off the image
CONFIG_LABELS = {"cat", "cup", "dog"}


def _png(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _rotated_jpeg(array) -> bytes:
    """JPEG stored sideways with EXIF orientation 8: viewers rotate it back to `array`'s orientation."""
    stored = np.rot90(array, k=-1)  # 90 degrees clockwise on disk
    exif = Image.Exif()
    exif[0x0112] = 8
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(stored)).save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    return buf.getvalue()


@pytest.fixture(scope="module")
def project(label_studio, backend):
    ls = LabelStudio(base_url=label_studio.url, api_key=label_studio.token)
    proj = ls.projects.create(title="e2e autolabel", label_config=(ROOT / "label_config.xml").read_text())
    # Uploads: one multipart request, a distinct field name per file.
    files = {"cat": ("chelsea.png", _png(data.chelsea()), "image/png"),
             "cup": ("coffee.png", _png(data.coffee()), "image/png")}
    response = requests.post(f"{label_studio.url}/api/projects/{proj.id}/import", files=files,
                             headers={"Authorization": f"Token {label_studio.token}"}, timeout=60)
    assert response.status_code == 201, response.text
    # Local-files storage with an EXIF-rotated photo.
    folder = label_studio.files_root / "photos"
    folder.mkdir()
    (folder / "chelsea_exif.jpg").write_bytes(_rotated_jpeg(data.chelsea()))
    storage = ls.import_storage.local.create(project=proj.id, path=str(folder), use_blob_urls=True,
                                             regex_filter=r".*\.jpg", title="photos")
    ls.import_storage.local.sync(id=storage.id)
    ml = ls.ml.create(project=proj.id, url=backend.url, title="autolabel", is_interactive=True,
                      extra_params={"num_samples": 128})
    return ls, proj, ml


def _tasks(ls, project_id):
    return list(ls.tasks.list(project=project_id))


def test_predictions_from_label_studio(project, backend):
    ls, proj, _ = project
    tasks = _tasks(ls, proj.id)
    urls = sorted(t.data["image"] for t in tasks)
    assert len(tasks) == 3
    assert any(u.startswith("/data/upload/") for u in urls) and any(u.startswith("/data/local-files/") for u in urls)

    ls.actions.create(id="retrieve_tasks_predictions", project=proj.id, selected_items={"all": True, "excluded": []})
    by_name = {}
    for task in tasks:
        predictions = ls.predictions.list(task=task.id)
        assert predictions, f"no prediction stored for task {task.data}; backend log:\n{backend.log.read_text()[-3000:]}"
        by_name[task.data["image"].rsplit("/", 1)[-1].split("-", 1)[-1]] = predictions[0]

    for name, prediction in by_name.items():
        assert prediction.model_version == "lime-efficientnet-lite0"
        assert prediction.result, name
        for region in prediction.result:
            labels = region["value"].get(region["type"], region["value"].get("choices"))
            assert set(labels) <= CONFIG_LABELS
            expected = (600, 400) if name == "coffee.png" else (451, 300)  # EXIF orientation applied
            assert (region["original_width"], region["original_height"]) == expected, name

    for name in ("chelsea.png", "chelsea_exif.jpg"):
        rects = [r for r in by_name[name].result if r["type"] == "rectanglelabels"]
        dets = results_to_detections(rects)
        assert "cat" in dets.labels, name
        cat_boxes = dets.xyxy[[label == "cat" for label in dets.labels]]
        assert box_iou(cat_boxes, CAT_HEAD).max() >= 0.5, (name, cat_boxes)
    assert any(r["value"].get("rectanglelabels") == ["cup"] for r in by_name["coffee.png"].result)
    assert any(r["type"] == "brushlabels" for r in by_name["chelsea.png"].result)


def test_annotation_reaches_webhook(project, backend):
    ls, proj, _ = project
    task = _tasks(ls, proj.id)[0]
    result = [{"from_name": "box", "to_name": "image", "type": "rectanglelabels", "original_width": 451,
               "original_height": 300, "value": {"x": 5, "y": 5, "width": 80, "height": 90, "rotation": 0,
                                                 "rectanglelabels": ["cat"]}}]
    annotation = ls.annotations.create(id=task.id, result=result)
    deadline = time.monotonic() + 20
    events = []
    while time.monotonic() < deadline:
        events = requests.get(f"{backend.url}/events", params={"project": proj.id}, timeout=5).json()["events"]
        if any(e["action"] == "ANNOTATION_CREATED" and e["annotation_id"] == annotation.id for e in events):
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"backend never received ANNOTATION_CREATED; events: {events}")
