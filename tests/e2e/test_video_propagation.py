"""An annotator's box on frame 1 of a video task becomes a track over the clip, through a real Label Studio and the
backend as served, with a tiny random-init SAM 2 video model (loaded by the real from_pretrained path).

Label Studio 1.23's video editor sends nothing when a `VideoRectangle` box is drawn (it has no smart tool), so the box
reaches the backend the two ways Label Studio itself offers: `POST /api/ml/{id}/interactive-annotating` (the task
comes with the user's drafts and annotations; the answer is returned, not stored) and the Data Manager's "Retrieve
Predictions" action (the task comes with its annotations; the prediction is stored), and Label Studio's editor shows
the stored track as the prediction's region with its keyframes (screenshot `video_box_carried.png`; random weights:
the carried box covers the whole frame)."""

import pytest
import requests
from label_studio_sdk.client import LabelStudio

from tests.e2e.browser import labelling_ui_shows_task, login
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


@pytest.fixture(scope="module")
def project(label_studio, tmp_path_factory):
    """A video project connected to the backend (tiny SAM 2 video tracker), two tasks of one clip, each annotated
    with one box on frame 1; yields (project id, ML backend id, task ids)."""
    tmp = tmp_path_factory.mktemp("video-boxes")
    scene = pan_scene(FRAMES, FPS)
    video = write_video(tmp / "pan.mp4", scene.frames, scene.fps).read_bytes()
    backend = BackendServer(tmp / "backend", label_studio.url, label_studio.token, PRELOAD_MODELS="false",
                            VIDEO_TRACKER_MODEL=str(save_sam2_video(tmp / "sam2-tiny")))
    try:
        ls = LabelStudio(base_url=label_studio.url, api_key=label_studio.token)
        created = ls.projects.create(title="video boxes", label_config=CONFIG)
        ml = ls.ml.create(project=created.id, url=backend.url, title="autolabel", extra_params=EXTRA,
                          is_interactive=True)
        files = {"a": ("a.mp4", video, "video/mp4"), "b": ("b.mp4", video, "video/mp4")}
        requests.post(f"{label_studio.url}/api/projects/{created.id}/import", files=files, timeout=120,
                      headers=_headers(label_studio)).raise_for_status()
        tasks = sorted(t.id for t in ls.tasks.list(project=created.id))
        for n, task in enumerate(tasks, start=1):
            ls.annotations.create(id=task, result=[_box_on_frame_one(f"cat-{n}")])
        yield created.id, ml.id, tasks
    finally:
        backend.stop()


def _headers(label_studio) -> dict:
    return {"Authorization": f"Token {label_studio.token}"}


def test_interactive_annotating_answers_the_box_carried_through_the_clip(project, label_studio):
    _, ml_id, (first, _) = project
    answer = requests.post(f"{label_studio.url}/api/ml/{ml_id}/interactive-annotating", headers=_headers(label_studio),
                           json={"task": first, "context": {}}, timeout=120)
    answer.raise_for_status()
    assert "errors" not in answer.json(), answer.json()
    (carried,) = answer.json()["data"]["result"]
    _check_track(carried, "cat-1")


def test_retrieve_predictions_stores_the_track_and_the_editor_shows_it(project, label_studio, browser, shots):
    project_id, _, (_, second) = project
    requests.post(f"{label_studio.url}/api/dm/actions", headers=_headers(label_studio), timeout=120,
                  params={"id": "retrieve_tasks_predictions", "project": project_id},
                  json={"selectedItems": {"all": False, "included": [second]}}).raise_for_status()
    stored = requests.get(f"{label_studio.url}/api/predictions", params={"task": second},
                          headers=_headers(label_studio), timeout=30).json()
    (prediction,) = stored
    (carried,) = prediction["result"]
    _check_track(carried, "cat-2")

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    try:
        login(page, label_studio)
        page.goto(f"{label_studio.url}/projects/{project_id}/data?task={second}")
        labelling_ui_shows_task(page, second)
        page.get_by_text(prediction["model_version"][:8]).first.click()  # the prediction's tab
        page.wait_for_timeout(1000)
        shown = page.evaluate(
            "() => { const s = window.Htx || window.LabelStudio.store; const a = s.annotationStore.selected;"
            " return {prediction: a.type === 'prediction', regions: a.regionStore.regions.map("
            "r => ({id: r.cleanId || r.id, keyframes: r.sequence.length}))}; }")
        assert shown == {"prediction": True, "regions": [{"id": "cat-2",
                                                          "keyframes": len(carried["value"]["sequence"])}]}, shown
        middle = carried["value"]["sequence"][len(carried["value"]["sequence"]) // 2]["frame"]
        page.evaluate("f => { const s = window.Htx || window.LabelStudio.store;"
                      " s.annotationStore.selected.names.get('video').setFrame(f); }", middle)
        page.mouse.move(650, 620)  # away from the tab's tooltip
        page.wait_for_timeout(2000)  # the video and the timeline's keyframe marks painted
        page.screenshot(path=str(shots / "video_box_carried.png"))
    finally:
        context.close()
