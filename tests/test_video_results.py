"""Tracks → Label Studio `videorectangle` regions (percent, 1-based frames, times) → per-frame boxes (table-driven)."""

import numpy as np
import pytest
from label_studio_sdk.label_interface import LabelInterface

from backend.core.detections import box_iou
from backend.core.ontology import Control
from backend.core.tracks import Track, VideoInfo
from backend.labelstudio.config import parse_label_config
from backend.labelstudio.keyframes import pairwise_iou
from backend.labelstudio.video import probe_video, read_frames
from backend.labelstudio.video_results import label_studio_fps, region_boxes, regions_to_tracks, tracks_to_regions
from backend.pipelines.tracking import detect_and_track
from tests.video_scenes import TemplateDetector, cat_patch, cup_patch, pan_scene, write_video

CONFIG = ('<View><Video name="video" value="$video" framerate="25"/><VideoRectangle name="box" toName="video"/>'
          '<Labels name="videoLabels" toName="video"><Label value="cat"/><Label value="cup"/></Labels></View>')
CONTROL = parse_label_config(CONFIG).controls[0]
INFO = VideoInfo(fps=25.0, frame_count=100, duration_s=4.0, width=200, height=100)


def track(frames, boxes, label="cat", scores=None, track_id=1):
    scores = np.full(len(frames), 0.8) if scores is None else scores
    return Track(track_id, label, frames, np.array(boxes, np.float32).reshape(-1, 4), scores)


def line(frames, start, end):
    """Boxes moving linearly from `start` (at frames[0]) to `end` (at frames[-1])."""
    t = (np.asarray(frames) - frames[0]) / max(1, frames[-1] - frames[0])
    return np.asarray(start, float) + t[:, None] * (np.asarray(end, float) - start)


SEQUENCES = [
    # name, track, fps (Label Studio), max_gap, expected [(frame, time, x, y, width, height, enabled)]
    ("constant motion: two keyframes", track(range(0, 11), line(range(11), [20, 10, 60, 50], [120, 30, 160, 70])),
     None, 1, [(1, 0.0, 10, 10, 20, 40, True), (11, 0.4, 60, 30, 20, 40, False)]),
    ("sampled every 5th frame", track([0, 5, 10, 15], line([0, 5, 10, 15], [0, 0, 20, 20], [30, 0, 50, 20])),
     None, 5, [(1, 0.0, 0, 0, 10, 20, True), (16, 0.6, 15, 0, 10, 20, False)]),
    ("box past the border is clipped to the frame", track([3], [[-10, -5, 50, 120]]),
     None, 1, [(4, 0.12, 0, 0, 25, 100, False)]),
    ("a gap ends the box and starts it again", track([0, 1, 2, 20, 21], [[0, 0, 10, 10]] * 5),
     None, 5, [(1, 0.0, 0, 0, 5, 10, True), (3, 0.08, 0, 0, 5, 10, False), (21, 0.8, 0, 0, 5, 10, True),
               (22, 0.84, 0, 0, 5, 10, False)]),
    ("Label Studio at 24 fps, the video at 25: matched by time", track([0, 25, 50], [[0, 0, 10, 10]] * 3),
     24.0, 25, [(1, 0.0, 0, 0, 5, 10, True), (49, 2.0, 0, 0, 5, 10, False)]),
]


@pytest.mark.parametrize("name,trk,fps,max_gap,expected", SEQUENCES, ids=[c[0] for c in SEQUENCES])
def test_percent_coordinates_frames_and_times(name, trk, fps, max_gap, expected):
    (region,) = tracks_to_regions([trk], CONTROL, INFO, max_gap=max_gap, fps=fps)
    got = [(k["frame"], k["time"], k["x"], k["y"], k["width"], k["height"], k["enabled"])
           for k in region["value"]["sequence"]]
    assert [g[0] for g in got] == [e[0] for e in expected]
    assert [g[6] for g in got] == [e[6] for e in expected]
    np.testing.assert_allclose([g[1:6] for g in got], [e[1:6] for e in expected], atol=1e-4)
    assert all(k["rotation"] == 0 for k in region["value"]["sequence"])
    assert all(k["time"] == pytest.approx((k["frame"] - 1) / (fps or INFO.fps)) for k in region["value"]["sequence"])


def test_region_envelope():
    tracks = [track([0, 1, 2], [[0, 0, 10, 10]] * 3, scores=np.array([0.9, 0.6, 0.6])),
              track([5, 6], [[50, 50, 90, 90]] * 2, label="cup", track_id=2),
              track([5, 6], [[50, 50, 90, 90]] * 2, label="dog", track_id=3)]  # not in the control: skipped
    regions = tracks_to_regions(tracks, CONTROL, INFO, max_gap=1)
    assert [r["value"]["labels"] for r in regions] == [["cat"], ["cup"]]
    for region in regions:
        assert (region["type"], region["from_name"], region["to_name"], region["origin"]) == \
            ("videorectangle", "box", "video", "prediction")
        assert (region["value"]["framesCount"], region["value"]["duration"]) == (100, 4.0)
    assert regions[0]["score"] == pytest.approx(0.7) and regions[1]["score"] == pytest.approx(0.8)
    assert len({r["id"] for r in regions}) == 2
    assert tracks_to_regions(tracks, CONTROL, VideoInfo(25.0, 100, 4.0, 200, 100), max_gap=1, fps=50.0)[0][
        "value"]["framesCount"] == 200
    errors = LabelInterface(CONFIG).validate_prediction({"result": regions, "score": 0.75, "model_version": "t"},
                                                        return_errors=True)
    assert errors == []


@pytest.mark.parametrize("frame_rate,data,expected", [
    ("25", None, 25.0),
    ("29.97", None, 29.97),
    ("", None, 24.0),              # Label Studio's default, whatever the file's rate
    ("$fps", {"fps": 30}, 30.0),
    ("$fps", {}, 24.0),
    ("0.04", None, 25.0),          # below 1: seconds per frame, as the editor reads it
    ("fast", None, 24.0),
])
def test_label_studio_fps(frame_rate, data, expected):
    control = Control("box", "VideoRectangle", "video", "video", ("cat",), frame_rate=frame_rate)
    assert label_studio_fps(control, data) == pytest.approx(expected)


def stop_and_go_with_gap(every):
    frames = [f for f in range(0, 100, every) if not 40 <= f < 60]
    boxes = [[10 + 3 * min(f, 30), 20 + max(0, f - 70), 50 + 3 * min(f, 30), 50 + max(0, f - 70)] for f in frames]
    return track(frames, boxes)


@pytest.mark.parametrize("every,max_gap", [(1, 1), (1, 10), (5, 5), (5, 10), (3, 6), (5, 30)])
def test_round_trip_tracks_regions_boxes(every, max_gap):
    trk = stop_and_go_with_gap(every)
    (region,) = tracks_to_regions([trk], CONTROL, INFO, max_gap=max_gap, min_iou=0.9)
    assert len(region["value"]["sequence"]) < len(trk) / 2
    (back,) = regions_to_tracks([region], INFO)
    assert back.label == "cat" and back.scores == pytest.approx(np.full(len(back), 0.8))
    shown = dict(zip(back.frames.tolist(), back.xyxy))
    assert set(trk.frames.tolist()) <= set(shown)
    ious = pairwise_iou(np.array([shown[f] for f in trk.frames.tolist()]), trk.xyxy)
    assert ious.min() >= 0.9
    hidden = set(range(int(trk.frames[0]), int(trk.frames[-1]) + 1)) - set(shown)
    before, after = max(f for f in trk.frames if f < 40), min(f for f in trk.frames if f >= 60)
    assert hidden == (set(range(before + 1, after)) if after - before > max_gap else set())
    assert back.frames[-1] == trk.frames[-1]  # the box ends with the track


def test_rotated_region_gives_the_bounds_of_the_turned_rectangle():
    region = {"type": "videorectangle", "value": {"labels": ["cat"], "framesCount": 10, "sequence": [
        {"frame": 1, "x": 10, "y": 10, "width": 20, "height": 10, "rotation": 90, "enabled": False}]}}
    frames, xyxy = region_boxes(region, (200, 100))
    # 40 x 10 px at (20, 10) turned a quarter clockwise about its top-left corner
    assert list(frames) == [0] and xyxy[0] == pytest.approx([10, 10, 20, 50])


def test_regions_without_label_or_of_other_types_are_skipped_and_malformed_ones_named():
    ok = {"type": "videorectangle", "value": {"labels": ["cat"], "sequence": [
        {"frame": 1, "x": 0, "y": 0, "width": 10, "height": 10, "enabled": False}]}}
    assert len(regions_to_tracks([ok, {**ok, "value": {**ok["value"], "labels": []}},
                                  {**ok, "type": "rectanglelabels"}], INFO)) == 1
    with pytest.raises(ValueError, match=r"region 1 \(r2\)"):
        regions_to_tracks([ok, {"id": "r2", "type": "videorectangle",
                                "value": {"labels": ["cat"], "sequence": [{"frame": "x"}]}}], INFO)


def test_real_video_round_trip_matches_the_known_boxes_on_every_frame(tmp_path):
    """Encode → decode → detect every 5th frame → track → keyframes → Label Studio's interpolation on ALL frames."""
    scene = pan_scene()
    path = write_video(tmp_path / "pan.mp4", scene.frames, scene.fps)
    info = probe_video(path)
    tracks = detect_and_track(read_frames(path, 5), TemplateDetector({"cat": cat_patch(), "cup": cup_patch()}),
                              info.fps, 5, batch_size=4)
    regions = tracks_to_regions(tracks, CONTROL, info, max_gap=10, min_iou=0.9, fps=label_studio_fps(CONTROL))
    assert sorted(len(r["value"]["sequence"]) for r in regions) == [2, 6]  # cat: constant; cup: stop, gap, go
    for back in regions_to_tracks(regions, info):
        truth = scene.boxes[back.label]
        present = ~np.isnan(truth[back.frames, 0])
        assert present.all(), f"{back.label} shown while out of the picture"
        ious = np.diag(box_iou(back.xyxy, truth[back.frames]))
        assert ious.min() > 0.85, (back.label, back.frames[ious.argmin()])
        assert len(back) >= 80
