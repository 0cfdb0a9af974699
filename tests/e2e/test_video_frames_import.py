"""End-to-end against a real Label Studio 1.23: every k-th frame of a real video imported as image tasks (CLI and
function), and a `<Video>` project storing and returning our `videorectangle` predictions and annotations."""

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from backend.core.detections import box_iou
from backend.labelstudio.client import LabelStudioConnection
from backend.labelstudio.config import parse_label_config
from backend.labelstudio.frames_import import import_frames
from backend.labelstudio.video import probe_video, read_frames
from backend.labelstudio.video_results import label_studio_fps, regions_to_tracks, tracks_to_regions
from backend.pipelines.tracking import detect_and_track
from backend.labelstudio.api import export_tasks
from backend.training.video_dataset import annotated_videos, video_frame_examples
from tests.video_scenes import TemplateDetector, cat_patch, cup_patch, pan_scene, write_video

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
IMAGE_CONFIG = ('<View><Image name="photo" value="$picture"/><RectangleLabels name="label" toName="photo">'
                '<Label value="cat"/><Label value="cup"/></RectangleLabels></View>')
VIDEO_CONFIG = ('<View><Video name="video" value="$video" framerate="25"/><VideoRectangle name="box" toName="video"/>'
                '<Labels name="videoLabels" toName="video"><Label value="cat"/><Label value="cup"/></Labels></View>')


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    scene = pan_scene(60)
    return scene, write_video(tmp_path_factory.mktemp("video") / "pan shot.mp4", scene.frames, scene.fps)


def _api(label_studio, method, path, **kwargs):
    response = requests.request(method, f"{label_studio.url}{path}", timeout=60,
                                headers={"Authorization": f"Token {label_studio.token}"}, **kwargs)
    assert response.status_code < 300, f"{method} {path}: HTTP {response.status_code} {response.text[:500]}"
    return response


def _project(label_studio, title, config):
    return _api(label_studio, "POST", "/api/projects", json={"title": title, "label_config": config}).json()["id"]


def _tasks(label_studio, project_id):
    return _api(label_studio, "GET", "/api/tasks", params={"project": project_id, "page_size": 1000}).json()["tasks"]


def test_frames_import_cli_creates_image_tasks(label_studio, video):
    scene, path = video
    project_id = _project(label_studio, "frames", IMAGE_CONFIG)
    command = [sys.executable, "-m", "backend.labelstudio.frames_import", str(path), "--every", "5",
               "--project", str(project_id), "--max-frames", "6", "--url", label_studio.url,
               "--api-key", label_studio.token]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["tasks"] == 6 and summary["image_key"] == "picture"  # read from the project's <Image>

    tasks = sorted(_tasks(label_studio, project_id), key=lambda t: t["data"]["frame"])
    assert sorted(t["id"] for t in tasks) == sorted(summary["task_ids"])
    assert [t["data"]["frame"] for t in tasks] == [0, 5, 10, 15, 20, 25]
    assert [t["data"]["time"] for t in tasks] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert {t["data"]["video"] for t in tasks} == {"pan shot.mp4"}
    decoded = {f.index: f.image for f in read_frames(path, 5, max_frames=6)}
    for task in tasks:
        url = task["data"]["picture"]
        assert url.startswith("/data/upload/") and url.endswith(f"pan_shot_frame{task['data']['frame']:06d}.jpg")
        served = _api(label_studio, "GET", url)  # Label Studio serves the uploaded frame
        image = np.asarray(Image.open(io.BytesIO(served.content)).convert("RGB"))
        assert image.shape == decoded[task["data"]["frame"]].shape
        assert np.abs(image.astype(int) - decoded[task["data"]["frame"]]).mean() < 3  # JPEG of that very frame
        assert np.abs(image.astype(int) - scene.frames[task["data"]["frame"]]).mean() < 8


def test_frames_import_function_png_and_unreadable_video(label_studio, video, tmp_path):
    _, path = video
    project_id = _project(label_studio, "frames png", IMAGE_CONFIG)
    connection = LabelStudioConnection(label_studio.url, label_studio.token)
    ids = import_frames(connection, project_id, path, every=20, image_key="picture", video_ref="s3://bucket/pan.mp4",
                        image_format="png")
    tasks = sorted(_tasks(label_studio, project_id), key=lambda t: t["data"]["frame"])
    assert [t["id"] for t in tasks] == ids and [t["data"]["frame"] for t in tasks] == [0, 20, 40]
    assert all(t["data"]["picture"].endswith(".png") and t["data"]["video"] == "s3://bucket/pan.mp4" for t in tasks)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 1000)
    done = subprocess.run([sys.executable, "-m", "backend.labelstudio.frames_import", str(broken), "--project",
                           str(project_id), "--url", label_studio.url, "--api-key", label_studio.token],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 1 and "broken.mp4 cannot be read" in done.stderr
    assert len(_tasks(label_studio, project_id)) == 3


def test_video_project_stores_and_returns_videorectangle_predictions(label_studio, video):
    scene, path = video
    project_id = _project(label_studio, "video", VIDEO_CONFIG)
    control = parse_label_config(VIDEO_CONFIG).controls[0]
    info = probe_video(path)
    tracks = detect_and_track(read_frames(path, 5), TemplateDetector({"cat": cat_patch(), "cup": cup_patch()}),
                              info.fps, 5, batch_size=4)
    regions = tracks_to_regions(tracks, control, info, max_gap=10, fps=label_studio_fps(control))
    created = _api(label_studio, "POST", f"/api/projects/{project_id}/import", params={"return_task_ids": "true"},
                   json=[{"data": {"video": "/data/upload/pan.mp4"}}]).json()
    (task_id,) = created["task_ids"]
    prediction = {"task": task_id, "result": regions, "score": 0.9, "model_version": "video-core-e2e"}
    _api(label_studio, "POST", "/api/predictions", json=prediction)

    (stored,) = _api(label_studio, "GET", "/api/predictions", params={"task": task_id}).json()
    assert stored["model_version"] == "video-core-e2e"
    assert stored["result"] == regions  # every keyframe, percent, frame, time and `enabled` kept as sent
    for back in regions_to_tracks(stored["result"], info):
        truth = scene.boxes[back.label]
        assert not np.isnan(truth[back.frames, 0]).any()
        assert np.diag(box_iou(back.xyxy, truth[back.frames])).min() > 0.85

    # an annotator accepts it: the export trains on keyframes and sampled frames
    annotation = [{**r, "origin": "manual"} for r in stored["result"]]
    _api(label_studio, "POST", f"/api/tasks/{task_id}/annotations", json={"result": annotation})
    connection = LabelStudioConnection(label_studio.url, label_studio.token)
    (annotated,) = annotated_videos(export_tasks(connection, project_id), [control])
    assert annotated.task_id == task_id and len(annotated.regions) == len(regions)
    examples = video_frame_examples(annotated, info, every=10)
    assert {0, 10, 20, 30, 40, 50} <= {e.frame for e in examples}
    for example in examples:
        for box, label in zip(example.boxes, example.labels):
            assert box_iou(box, scene.boxes[label][example.frame])[0, 0] > 0.85
