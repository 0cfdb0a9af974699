"""An annotator's video boxes carried through the next frames by `/predict` (the path Label Studio's
`interactive-annotating` and "Retrieve Predictions" take), with a tiny random-init SAM 2 video model loaded through the
real from_pretrained path: the region keeps its id, label and keyframes, the track continues after them as keyframes,
several boxes at once, the caps hold, a missing tracker is a per-task error, and the result round-trips as tracks."""

import pytest

from backend.core.tracks import VideoInfo
from backend.labelstudio.video_results import regions_to_tracks
from backend.service.app import create_app
from tests.tiny_video_models import save_sam2_video
from tests.video_scenes import pan_scene, write_video

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FRAMES, FPS = 16, 25
CONFIG = ('<View><Video name="video" value="$video" framerate="25"/><VideoRectangle name="box" toName="video"/>'
          '<Labels name="videoLabels" toName="video"><Label value="cat"/><Label value="cup"/></Labels></View>')
URL = "/data/upload/1/pan.mp4"


def region(region_id, label="cat", frames=(1,), box=(20.0, 30.0, 25.0, 25.0), enabled_last=True):
    x, y, w, h = box
    sequence = [{"frame": f, "time": (f - 1) / FPS, "x": x, "y": y, "width": w, "height": h, "rotation": 0,
                 "enabled": True} for f in frames]
    sequence[-1]["enabled"] = enabled_last
    return {"id": region_id, "from_name": "box", "to_name": "video", "type": "videorectangle", "origin": "manual",
            "value": {"framesCount": FRAMES, "duration": FRAMES / FPS, "labels": [label], "sequence": sequence}}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from backend.core.settings import Settings
    from tests.conftest import FilePeer

    root = tmp_path_factory.mktemp("propagation")
    scene = pan_scene(FRAMES, FPS)
    peer = FilePeer()
    peer.routes[URL] = (200, write_video(root / "pan.mp4", scene.frames, scene.fps).read_bytes(), {})
    tracker = save_sam2_video(root / "sam2-tiny")

    def client(extra=None, **settings):
        base = dict(model_dir=root / "models", preload_models=False, device="cpu", run_jobs=False,
                    pipeline="lime", label_studio_url=peer.url, label_studio_api_key="k" * 40,
                    max_video_bytes=10_000_000, video_tracker_model=str(tracker))
        app = create_app(Settings(**{**base, **settings})).test_client()
        assert app.post("/setup", json={"project": 1, "schema": CONFIG, "extra_params": extra or {}}).status_code == 200
        return app

    yield client, scene
    peer.close()


def predict(app, task, context=None):
    body = {"project": 1, "tasks": [{"id": 1, "data": {"video": URL}, **task}]}
    if context is not None:
        body["params"] = {"context": context}
    response = app.post("/predict", json=body)
    assert response.status_code == 200, response.get_json()
    (prediction,) = response.get_json()["results"]
    return prediction


def test_an_annotated_box_is_carried_through_the_clip(setup):
    client, scene = setup
    app = client()
    user = region("r1", frames=(1, 4))
    prediction = predict(app, {"annotations": [{"result": [user], "updated_at": "2026-12-01T00:00:00Z"}]})
    assert "error" not in prediction, prediction
    (carried,) = prediction["result"]
    assert carried["id"] == "r1" and carried["value"]["labels"] == ["cat"] and carried["type"] == "videorectangle"
    sequence = carried["value"]["sequence"]
    assert sequence[:2] == user["value"]["sequence"]  # the annotator's keyframes, untouched
    frames = [k["frame"] for k in sequence]
    assert frames == sorted(set(frames)) and frames[2] > 4 and frames[-1] <= FRAMES
    assert all(k["frame"] == round(k["time"] * FPS) + 1 for k in sequence[2:])
    assert carried["value"]["framesCount"] == FRAMES and 0.0 <= carried["score"] <= 1.0
    assert prediction["score"] == carried["score"]
    info = VideoInfo(FPS, FRAMES, FRAMES / FPS, scene.frames[0].shape[1], scene.frames[0].shape[0])
    (track,) = regions_to_tracks([carried], info, FPS)  # Label Studio can show it on every frame up to its end
    assert track.frames[0] == 0 and track.frames[-1] >= 4


def test_context_boxes_come_first_and_several_are_carried_at_once(setup):
    client, _ = setup
    app = client()
    boxes = [region("a", frames=(2,)), region("b", label="cup", frames=(5,), box=(60.0, 50.0, 20.0, 30.0))]
    ended = region("c", frames=(1, 3), enabled_last=False)
    prediction = predict(app, {"drafts": [{"result": [region("draft")]}]}, {"result": boxes + [ended]})
    result = {r["id"]: r for r in prediction["result"]}
    assert list(result) == ["a", "b", "c"]
    assert result["c"] == ended  # ended by the annotator: kept as it is
    for rid, first in (("a", 2), ("b", 5)):
        sequence = result[rid]["value"]["sequence"]
        assert sequence[0]["frame"] == first and len(sequence) > 1 and sequence[1]["frame"] > first
    assert result["b"]["value"]["labels"] == ["cup"]


def test_an_interactive_request_on_a_video_config_takes_the_newest_draft(setup):
    client, _ = setup
    app = client()
    task = {"drafts": [{"result": [region("old")], "updated_at": "2026-12-01T00:00:00Z"},
                       {"result": [region("new", frames=(3,))], "updated_at": "2026-12-02T00:00:00Z"}]}
    prediction = predict(app, task, {"result": []})
    assert [r["id"] for r in prediction["result"]] == ["new"]


def test_each_box_is_capped_by_frames_and_seconds_after_its_own_keyframe(setup):
    client, _ = setup
    early, late = region("early", frames=(1,)), region("late", frames=(9,))
    for extra, frames in (({"propagate_max_frames": 3}, 3), ({"propagate_max_seconds": 0.12}, 3)):  # 0.12 s = 3 frames
        prediction = predict(client(extra), {"annotations": [{"result": [early, late]}]})
        for carried_region, own in zip(prediction["result"], (1, 9)):
            sequence = carried_region["value"]["sequence"]
            assert sequence[0]["frame"] == own and len(sequence) > 1, (extra, sequence)
            # the last keyframe ends the box one frame after the last carried one
            assert max(k["frame"] for k in sequence) <= own + frames + 1, (extra, sequence)
            assert max(k["frame"] for k in sequence if k["enabled"]) <= own + frames, (extra, sequence)


def test_the_request_deadline_stops_propagation_early(setup):
    client, _ = setup
    prediction = predict(client(predict_deadline_s=1e-6), {"annotations": [{"result": [region("r")]}]})
    assert "error" not in prediction
    assert prediction["result"] == [region("r")]  # stopped before the first frame: nothing carried, nothing lost


def test_a_framerate_other_than_the_videos_and_a_small_working_size(setup):
    client, _ = setup
    config = CONFIG.replace('framerate="25"', 'framerate="50"')  # Label Studio numbers the 25 fps clip at 50
    app = client(working_image_side=64)  # frames decode at 64 px: boxes are mapped back to the displayed size
    assert app.post("/setup", json={"project": 1, "schema": config}).status_code == 200
    user = region("r", frames=(3,))  # Label Studio frame 3 at 50 fps = video frame 1
    prediction = predict(app, {"annotations": [{"result": [user]}]})
    sequence = prediction["result"][0]["value"]["sequence"]
    assert sequence[0] == user["value"]["sequence"][0]
    assert prediction["result"][0]["value"]["framesCount"] == 2 * FRAMES
    later = [k for k in sequence[1:] if k["enabled"]]
    assert later and all(k["frame"] % 2 == 1 for k in later)  # every video frame is an odd Label Studio frame
    # the tiny random tracker's mask covers the whole frame: the box must too, at the displayed size
    assert all(k["width"] > 90 and k["height"] > 90 for k in later), later


def test_ended_boxes_or_carrying_off_give_the_pipelines_tracks(setup):
    client, _ = setup
    cheap = {"video_max_frames": 1, "num_samples": 8, "superpixels": 8, "lime_windows": 1}
    ended = region("done", frames=(1, 5), enabled_last=False)
    for extra, annotation in ((cheap, [ended]), ({**cheap, "carry_video_boxes": False}, [region("r")])):
        prediction = predict(client(extra), {"annotations": [{"result": annotation}]})
        assert "error" not in prediction, prediction
        assert all(r["id"] not in ("done", "r") for r in prediction["result"])  # LIME's own tracks, if any


def test_without_a_tracker_the_task_gets_an_error_naming_it(setup, tmp_path):
    client, _ = setup
    app = client(video_tracker_model=str(tmp_path / "missing"))
    prediction = predict(app, {"annotations": [{"result": [region("r")]}]})
    assert "result" not in prediction and "video tracker" in prediction["error"]
    health = app.get("/health").get_json()["models"]["video_tracker"]
    assert health["state"] == "failed" and "missing" in health["error"] and "video boxes" in health["used_by"]
    assert app.get("/health").get_json()["status"] == "UP"


def test_a_box_past_the_end_or_outside_the_frame_is_a_task_error(setup):
    client, _ = setup
    prediction = predict(client(), {"annotations": [{"result": [region("r", frames=(FRAMES + 50,))]}]})
    assert "past the video" in prediction["error"]
    outside = predict(client(), {"annotations": [{"result": [region("r", box=(120.0, 10.0, 20.0, 20.0))]}]})
    assert "could not be carried" in outside["error"] and "outside" in outside["error"], outside


def test_admission_counts_the_frames_to_carry(setup):
    from backend.core.params import PredictParams
    from backend.labelstudio.config import parse_label_config
    from backend.service.predict import _work

    params = PredictParams(propagate_max_frames=40, video_max_frames=7)
    onto = parse_label_config(CONFIG)
    seeded = {"data": {"video": URL}, "annotations": [{"result": [region("r")]}]}
    ended = {"data": {"video": URL}, "annotations": [{"result": [region("e", enabled_last=False)]}]}
    plain = {"data": {"video": URL}}
    assert _work([seeded, ended, plain], onto, params) == (40, 14)
    assert _work([plain], onto, params, {"result": [region("c")]}) == (40, 0)
    off = PredictParams(carry_video_boxes=False, video_max_frames=7)
    assert _work([seeded], onto, off) == (0, 7)
