"""An annotator's box on frame 1 of a video task becomes a track over the clip, through a real Label Studio and the
backend as served, with a tiny random-init SAM 2 video model (loaded by the real from_pretrained path).

Label Studio 1.23's video editor sends nothing when a `VideoRectangle` box is drawn (it has no smart tool), so the box
reaches the backend the two ways Label Studio itself offers: `POST /api/ml/{id}/interactive-annotating` (the task
comes with the user's drafts and annotations; the answer is returned, not stored) and the Data Manager's "Retrieve
Predictions" action (the task comes with its annotations; the prediction is stored)."""

import pytest
import requests
from label_studio_sdk.client import LabelStudio

from tests.e2e.servers import BackendServer
from tests.tiny_video_models import save_sam2_video
from tests.video_scenes import pan_scene, write_video

pytestmark = pytest.mark.e2e
FRAMES, FPS = 20, 25
CONFIG = ('<View><Video name="video" value="$video" framerate="25"/><VideoRectangle name="box" toName="video"/>'
          '<Labels name="videoLabels" toName="video"><Label value="cat"/><Label value="cup"/></Labels></View>')
EXTRA = {"auto_predict": False, "pipeline": "lime", "propagate_max_frames": 100}


def _box_on_frame_one(region_id: str) -> dict:
    return {"id": region_id, "from_name": "box", "to_name": "video", "type": "videorectangle", "origin": "manual",
            "value": {"framesCount": FRAMES, "duration": FRAMES / FPS, "labels": ["cat"],
                      "sequence": [{"frame": 1, "time": 0.0, "x": 10.0, "y": 20.0, "width": 25.0, "height": 30.0,
                                    "rotation": 0, "enabled": True}]}}


def _check_track(region: dict, region_id: str) -> None:
    assert region["id"] == region_id and region["type"] == "videorectangle" and region["value"]["labels"] == ["cat"]
    sequence = region["value"]["sequence"]
    assert sequence[0] == _box_on_frame_one(region_id)["value"]["sequence"][0]  # the annotator's own keyframe
    frames = [k["frame"] for k in sequence]
    assert len(frames) >= 2 and frames == sorted(set(frames)) and 1 < frames[-1] <= FRAMES, frames
    assert region["value"]["framesCount"] == FRAMES


def test_a_box_on_frame_one_becomes_a_track_over_the_clip(label_studio, tmp_path):
    scene = pan_scene(FRAMES, FPS)
    video = write_video(tmp_path / "pan.mp4", scene.frames, scene.fps).read_bytes()
    tracker = save_sam2_video(tmp_path / "sam2-tiny")
    backend = BackendServer(tmp_path / "backend", label_studio.url, label_studio.token, PRELOAD_MODELS="false",
                            VIDEO_TRACKER_MODEL=str(tracker))
    headers = {"Authorization": f"Token {label_studio.token}"}
    try:
        ls = LabelStudio(base_url=label_studio.url, api_key=label_studio.token)
        project = ls.projects.create(title="video boxes", label_config=CONFIG)
        ml = ls.ml.create(project=project.id, url=backend.url, title="autolabel", extra_params=EXTRA,
                          is_interactive=True)
        files = {"a": ("a.mp4", video, "video/mp4"), "b": ("b.mp4", video, "video/mp4")}
        requests.post(f"{label_studio.url}/api/projects/{project.id}/import", files=files, timeout=120,
                      headers=headers).raise_for_status()
        first, second = sorted(ls.tasks.list(project=project.id), key=lambda t: t.id)
        ls.annotations.create(id=first.id, result=[_box_on_frame_one("cat-1")])
        ls.annotations.create(id=second.id, result=[_box_on_frame_one("cat-2")])

        answer = requests.post(f"{label_studio.url}/api/ml/{ml.id}/interactive-annotating", headers=headers,
                               json={"task": first.id, "context": {}}, timeout=120)
        answer.raise_for_status()
        assert "errors" not in answer.json(), answer.json()
        (carried,) = answer.json()["data"]["result"]
        _check_track(carried, "cat-1")

        action = requests.post(f"{label_studio.url}/api/dm/actions", headers=headers, timeout=120,
                               params={"id": "retrieve_tasks_predictions", "project": project.id},
                               json={"selectedItems": {"all": False, "included": [second.id]}})
        action.raise_for_status()
        stored = requests.get(f"{label_studio.url}/api/predictions", params={"task": second.id}, headers=headers,
                              timeout=30).json()
    finally:
        backend.stop()
    (prediction,) = stored
    (carried,) = prediction["result"]
    _check_track(carried, "cat-2")
