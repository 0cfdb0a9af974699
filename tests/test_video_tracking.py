"""Linking per-frame detections into tracks with ByteTrack (per label, sampled frames), and the video path."""

import numpy as np
import pytest

from backend.core.detections import Detections, box_iou
from backend.core.tracks import Track
from backend.labelstudio.video import probe_video, read_frames
from backend.pipelines.tracking import TrackingParams, detect_and_track, link_tracks
from tests.video_scenes import CUP_HIDDEN, TemplateDetector, cat_patch, cup_patch, pan_scene, write_video

W, H, FPS = 640, 480, 25


def box(cx, cy, w=60, h=50):
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def frames_of(objects, n_frames, every=1):
    """objects: list of (label, f(frame) → box or None, score) → frame index → Detections."""
    out = {}
    for f in range(0, n_frames, every):
        found = [(label, path(f), score) for label, path, score in objects if path(f) is not None]
        out[f] = Detections(np.array([b for _, b, _ in found], np.float32).reshape(-1, 4), [s for *_, s in found],
                            [label for label, *_ in found], (W, H))
    return out


def follows(track: Track, path) -> bool:
    """Every box of the track is where `path` puts the object at that frame."""
    return all(path(int(f)) is not None and box_iou(b, path(int(f)))[0, 0] > 0.99 for f, b in zip(track.frames, track.xyxy))


RIGHT = lambda f: box(50 + 6 * f, 200)           # noqa: E731
LEFT = lambda f: box(590 - 6 * f, 215)           # noqa: E731  crosses RIGHT around frame 45, overlapping
STILL = lambda f: box(300, 300)                   # noqa: E731


def with_gap(path, hidden):
    return lambda f: None if f in hidden else path(f)


def test_crossing_objects_keep_their_identity():
    dets = frames_of([("cat", RIGHT, 0.9), ("cat", LEFT, 0.85)], 90)
    overlap = box_iou(RIGHT(45), LEFT(45))[0, 0]
    assert overlap > 0.5  # they really cross
    tracks = link_tracks(dets, FPS)
    assert len(tracks) == 2 and [len(t) for t in tracks] == [90, 90]
    assert {follows(t, RIGHT) for t in tracks} == {True, False}
    assert all(follows(t, RIGHT) or follows(t, LEFT) for t in tracks)
    assert [t.track_id for t in tracks] == [1, 2]


@pytest.mark.parametrize("every,lost_frames,hidden,expected_tracks", [
    (1, 30, range(20, 35), 1),     # 15 frames unseen, waits 30: one track through the gap
    (1, 10, range(20, 35), 2),     # waits 10 only: a new track after the gap
    (5, 30, range(20, 45), 1),     # sampled: 5 steps unseen, waits 6 steps
    (5, 10, range(20, 45), 2),     # waits 2 steps
    (5, 30, range(20, 60), 2),     # 8 steps unseen > 6
])
def test_gap_within_lost_buffer_is_one_track(every, lost_frames, hidden, expected_tracks):
    path = with_gap(STILL, hidden)
    dets = frames_of([("cup", path, 0.9)], 90, every)
    tracks = link_tracks(dets, FPS, every, TrackingParams(lost_frames=lost_frames))
    assert len(tracks) == expected_tracks
    seen = [f for f in range(0, 90, every) if f not in hidden]
    assert sorted(int(f) for t in tracks for f in t.frames) == seen  # no frame lost, none invented
    assert all(np.all(np.diff(t.frames) >= every) for t in tracks)


def test_a_track_never_switches_label():
    # the detector calls the same object "cat" until frame 30, then "dog"; a "dog" stands right beside it
    flip = lambda f: box(100 + 3 * f, 240)  # noqa: E731
    near = lambda f: box(106 + 3 * f, 246)  # noqa: E731
    dets = {}
    for f in range(60):
        dets[f] = Detections(np.array([flip(f), near(f)], np.float32), [0.9, 0.8],
                             ["cat" if f < 30 else "dog", "dog"], (W, H))
    tracks = link_tracks(dets, FPS)
    for t in tracks:
        labels = {dets[int(f)].labels[int(np.argmax(box_iou(b, dets[int(f)].xyxy)[0]))] for f, b in zip(t.frames, t.xyxy)}
        assert labels == {t.label}
    cats = [t for t in tracks if t.label == "cat"]
    assert len(cats) == 1 and list(cats[0].frames) == list(range(30))
    dogs = sorted((t for t in tracks if t.label == "dog"), key=lambda t: t.frames[0])
    assert [(int(t.frames[0]), len(t)) for t in dogs] == [(0, 60), (30, 30)]


def test_a_track_starting_late_keeps_its_first_detection():
    late = lambda f: None if f < 12 else box(200 + 4 * f, 100)  # noqa: E731
    tracks = link_tracks(frames_of([("cat", STILL, 0.9), ("cup", late, 0.9), ("cat", late, 0.9)], 40), FPS)
    starts = sorted((t.label, int(t.frames[0]), len(t)) for t in tracks)
    assert starts == [("cat", 0, 40), ("cat", 12, 28), ("cup", 12, 28)]


@pytest.mark.parametrize("min_length,expected", [(1, [3, 30]), (3, [3, 30]), (4, [30]), (31, [])])
def test_min_length_drops_short_tracks(min_length, expected):
    short = lambda f: box(100, 400) if 10 <= f < 13 else None  # noqa: E731  seen on 3 frames
    blip = lambda f: box(500, 400) if f == 10 else None  # noqa: E731  a one-frame false positive: never a track
    tracks = link_tracks(frames_of([("cat", STILL, 0.9), ("cat", short, 0.9), ("cat", blip, 0.9)], 30), FPS,
                         params=TrackingParams(min_length=min_length))
    assert sorted(len(t) for t in tracks) == expected


def test_weak_detections_start_no_track_but_extend_one():
    fading = lambda f: box(300, 100 + 2 * f)  # noqa: E731
    dets = frames_of([("cat", fading, 0.9)], 20)
    weak = {f: Detections(d.xyxy, np.where(f >= 10, 0.2, 0.9) * np.ones(len(d)), d.labels, d.image_size)
            for f, d in dets.items()}
    (track,) = link_tracks(weak, FPS, params=TrackingParams(activation_threshold=0.5))
    assert len(track) == 20 and track.scores[-1] == pytest.approx(0.2)
    only_weak = {f: Detections(d.xyxy, [0.2] * len(d), d.labels, d.image_size) for f, d in dets.items()}
    assert link_tracks(only_weak, FPS, params=TrackingParams(activation_threshold=0.5)) == []


def test_bad_arguments():
    with pytest.raises(ValueError):
        link_tracks({}, 0)
    with pytest.raises(ValueError):
        TrackingParams(min_length=0)
    assert link_tracks({}, FPS) == []


@pytest.fixture(scope="module")
def pan_video(tmp_path_factory):
    scene = pan_scene()
    return scene, write_video(tmp_path_factory.mktemp("tracking") / "pan.mp4", scene.frames, scene.fps)


@pytest.mark.parametrize("every,batch_size,batches", [(1, 16, [16] * 6 + [4]), (5, 8, [8, 8, 4]), (10, 3, [3, 3, 3, 1])])
def test_video_path_on_a_real_video(pan_video, every, batch_size, batches):
    scene, path = pan_video
    info = probe_video(path)
    detector = TemplateDetector({"cat": cat_patch(), "cup": cup_patch()})
    tracks = detect_and_track(read_frames(path, every), detector, info.fps, every, batch_size)
    assert detector.batches == batches
    assert sorted(t.label for t in tracks) == ["cat", "cup"]
    for track in tracks:
        truth = scene.boxes[track.label]
        expected = [f for f in range(0, len(truth), every) if not np.isnan(truth[f, 0])]
        assert list(track.frames) == expected
        np.testing.assert_allclose(track.xyxy, truth[track.frames], atol=1)
        assert track.score > 0.9
    cup = next(t for t in tracks if t.label == "cup")
    assert not set(cup.frames) & set(CUP_HIDDEN)


def test_detect_must_answer_every_frame(pan_video):
    _, path = pan_video
    with pytest.raises(ValueError, match="3 results for 4 frames"):
        detect_and_track(read_frames(path, 10), lambda frames: [Detections.empty((320, 240))] * 3, 25, 10, 4)
