"""Video end to end through the service and a real Label Studio: a `<Video>` project whose one video is annotated
with `videorectangle` tracks trains the project's detector on the video's frames (keyframes and interpolated
frames) through the same training job as images; the new version then pre-labels the unannotated video in the
background: one `videorectangle` region per track, keyframes only where needed, stored and returned by Label
Studio."""

import time

import numpy as np
import pytest
import requests
from label_studio_sdk.client import LabelStudio

from backend.core.detections import box_iou
from backend.core.tracks import Track, VideoInfo
from backend.labelstudio.config import parse_label_config
from backend.labelstudio.video_results import region_boxes, tracks_to_regions
from tests.e2e.servers import BackendServer
from tests.video_scenes import FRAME_H, FRAME_W, pan_scene, write_video

pytestmark = pytest.mark.e2e
CONFIG = ('<View><Video name="video" value="$video" framerate="25"/><VideoRectangle name="box" toName="video"/>'
          '<Labels name="videoLabels" toName="video"><Label value="cat"/><Label value="cup"/></Labels></View>')
EXTRA = {"train_epochs": 10, "train_image_size": 240, "train_time_budget_s": 60, "train_video_step": 2,
         "box_threshold": 0.2, "video_frame_step": 3, "keyframe_max_gap": 6, "num_samples": 8, "superpixels": 8,
         "train_min_new": 100, "pipeline": "auto"}


def _truth_regions(scene, control):
    """The scene's true boxes as Label Studio `videorectangle` regions (what an annotator would draw)."""
    tracks = []
    for n, (label, boxes) in enumerate(scene.boxes.items(), start=1):
        shown = ~np.isnan(boxes[:, 0])
        tracks.append(Track(n, label, np.nonzero(shown)[0], boxes[shown].astype(np.float32),
                            np.ones(int(shown.sum()), np.float32)))
    info = VideoInfo(float(scene.fps), len(scene.frames), len(scene.frames) / scene.fps, FRAME_W, FRAME_H)
    regions = tracks_to_regions(tracks, control, info, max_gap=1, min_iou=0.95, fps=scene.fps)
    for region in regions:
        region.pop("origin")
        region.pop("score")
    return regions


def test_video_annotations_train_the_detector_and_it_pre_labels_the_next_video(label_studio, tmp_path):
    scene = pan_scene(60)
    video = write_video(tmp_path / "pan.mp4", scene.frames, scene.fps).read_bytes()
    backend = BackendServer(tmp_path / "backend", label_studio.url, label_studio.token, PRELOAD_MODELS="false")
    try:
        ls = LabelStudio(base_url=label_studio.url, api_key=label_studio.token)
        project = ls.projects.create(title="video", label_config=CONFIG)
        ml = ls.ml.create(project=project.id, url=backend.url, title="autolabel", extra_params=EXTRA)
        files = {"a": ("pan-a.mp4", video, "video/mp4"), "b": ("pan-b.mp4", video, "video/mp4")}
        requests.post(f"{label_studio.url}/api/projects/{project.id}/import", files=files, timeout=120,
                      headers={"Authorization": f"Token {label_studio.token}"}).raise_for_status()
        annotated, other = sorted(ls.tasks.list(project=project.id), key=lambda t: t.id)
        control = next(c for c in parse_label_config(CONFIG).controls if c.is_video)
        ls.annotations.create(id=annotated.id, result=_truth_regions(scene, control))
        ls.ml.train(id=ml.id)  # "Start training"
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            jobs = requests.get(f"{backend.url}/jobs", params={"project": project.id}, timeout=10).json()["jobs"]
            if any(j["trigger"] == "VERSION_ACTIVATED" and j["status"] == "done" for j in jobs):
                break
            assert not any(j["status"] == "failed" for j in jobs), jobs
            time.sleep(2)
        else:
            pytest.fail(f"no re-prediction after training: {jobs}\n{backend.log.read_text()[-3000:]}")
        train = next(j for j in jobs if j["kind"] == "train")
        assert train["result"]["detector"]["activated"] and train["result"]["detector"]["n_train_images"] >= 20
        predictions = requests.get(f"{label_studio.url}/api/predictions", params={"task": other.id}, timeout=30,
                                   headers={"Authorization": f"Token {label_studio.token}"}).json()
    finally:
        backend.stop()
    (prediction,) = [p for p in predictions if p["model_version"] == f"project{project.id}-detector-v0001"]
    regions = prediction["result"]
    assert regions and all(r["type"] == "videorectangle" and r["value"]["framesCount"] == 60 for r in regions)
    assert all(r["value"]["labels"][0] in ("cat", "cup") for r in regions)
    for region in regions:  # keyframes only where needed: fewer than the frames the track was detected on
        sequence = region["value"]["sequence"]
        assert sequence[-1]["enabled"] is False and all(k["frame"] >= 1 for k in sequence)
    cat = scene.boxes["cat"]
    best = 0.0
    for region in (r for r in regions if r["value"]["labels"] == ["cat"]):
        frames, boxes = region_boxes(region, (FRAME_W, FRAME_H))
        for frame, box in zip(frames, boxes):
            if frame < len(cat) and not np.isnan(cat[frame, 0]):
                best = max(best, float(box_iou(box[None], cat[frame][None])[0, 0]))
    assert best >= 0.5, best  # the trained detector finds the cat where it is
