"""Video tasks through `/predict` (the same code path as background predict jobs): the video is fetched under the
image host rules, decoded, the project's image pipeline runs on every k-th frame, tracks become `videorectangle`
regions. Here the grounded pipeline in cascade mode (a generic prompt finds objects, the real EfficientNet-Lite0
names them), with tiny random-init Grounding DINO: the labels must be the project's, never the generic prompt."""

import pytest

from backend.service.app import create_app
from tests.tiny_models import save_grounding_dino, save_sam
from tests.video_scenes import pan_scene, write_video

CONFIG = ('<View><Video name="video" value="$video" framerate="25"/><VideoRectangle name="box" toName="video"/>'
          '<Labels name="videoLabels" toName="video"><Label value="cat"/><Label value="cup"/></Labels></View>')
CASCADE = {"cascade_prompt": "animal or cup", "box_threshold": 0.0, "text_threshold": 0.0, "class_threshold": 0.0,
           "video_frame_step": 1, "video_max_frames": 8, "review_score": "confidence", "track_min_length": 1,
           "track_activation_threshold": 0.0}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from tests.conftest import FilePeer

    root = tmp_path_factory.mktemp("video-service")
    scene = pan_scene(60)
    peer = FilePeer()
    peer.routes["/data/upload/1/pan.mp4"] = (200, write_video(root / "pan.mp4", scene.frames, scene.fps).read_bytes(),
                                             {})
    peer.routes["/data/upload/1/not-a-video.mp4"] = (200, b"\x00" * 4096, {})
    from backend.core.settings import Settings

    settings = Settings(model_dir=root / "models", preload_models=False, device="cpu", run_jobs=False,
                        pipeline="grounded", detector_model=str(save_grounding_dino(root / "dino")),
                        sam_model=str(save_sam(root / "sam")), label_studio_url=peer.url,
                        label_studio_api_key="k" * 40, max_video_bytes=10_000_000)
    client = create_app(settings).test_client()
    assert client.post("/setup", json={"project": 1, "schema": CONFIG, "extra_params": CASCADE}).status_code == 200
    yield client
    peer.close()


def _predict(client, *urls):
    tasks = [{"id": i + 1, "data": {"video": url}} for i, url in enumerate(urls)]
    return client.post("/predict", json={"project": 1, "tasks": tasks}).get_json()["results"]


def test_the_cascade_names_the_tracks_of_a_video(client):
    (prediction,) = _predict(client, "/data/upload/1/pan.mp4")
    assert "error" not in prediction, prediction
    regions = prediction["result"]
    assert regions, "no track at all"
    for region in regions:
        assert region["type"] == "videorectangle" and region["from_name"] == "box" and region["to_name"] == "video"
        assert region["value"]["labels"][0] in ("cat", "cup")  # named by the classifier, not "animal or cup"
        assert region["value"]["framesCount"] == 60 and region["value"]["sequence"][-1]["enabled"] is False
        assert all(k["frame"] == round(k["time"] * 25) + 1 for k in region["value"]["sequence"])
    assert 0.0 <= prediction["score"] <= 1.0


def test_unusable_videos_get_an_error_entry(client):
    results = _predict(client, "/data/upload/1/not-a-video.mp4", "/data/upload/1/missing.mp4",
                       "http://elsewhere.example/v.mp4")
    assert all("result" not in r for r in results)
    assert "not a readable video" in results[0]["error"] or "video" in results[0]["error"]
    assert "HTTP 404" in results[1]["error"]
    assert "neither Label Studio" in results[2]["error"]
