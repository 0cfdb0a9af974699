"""Exported video tasks with `videorectangle` annotations → per-frame training examples, and their decoded frames."""

import numpy as np
import pytest

from backend.core.detections import box_iou
from backend.core.errors import BadRequest
from backend.core.tracks import Track, VideoInfo
from backend.labelstudio.config import parse_label_config
from backend.labelstudio.video import probe_video
from backend.labelstudio.video_results import tracks_to_regions
from backend.training.video_dataset import annotated_videos, example_images, video_frame_examples
from tests.video_scenes import cat_patch, cup_patch, pan_scene, write_video

CONFIG = ('<View><Video name="video" value="$video" framerate="{fps}"/><VideoRectangle name="box" toName="video"/>'
          '<Labels name="videoLabels" toName="video"><Label value="cat"/><Label value="cup"/></Labels></View>')
CONTROLS = parse_label_config(CONFIG.format(fps=25)).controls
INFO = VideoInfo(fps=25.0, frame_count=20, duration_s=0.8, width=200, height=100)


def keyframe(frame, x, y, w, h, enabled=True):
    return {"frame": frame, "time": (frame - 1) / 25, "x": x, "y": y, "width": w, "height": h, "rotation": 0,
            "enabled": enabled}


def region(label, *sequence, from_name="box"):
    return {"id": label, "from_name": from_name, "to_name": "video", "type": "videorectangle", "origin": "manual",
            "value": {"framesCount": 20, "duration": 0.8, "labels": [label], "sequence": list(sequence)}}


def task(task_id, regions, **annotation):
    return {"id": task_id, "data": {"video": f"/data/upload/1/clip{task_id}.mp4"},
            "annotations": [{"id": 10 * task_id, "result": regions, "was_cancelled": False,
                             "updated_at": "2026-01-01", **annotation}]}


def test_annotated_videos_pick_the_chosen_annotation_and_known_regions():
    cat = region("cat", keyframe(1, 0, 0, 10, 10))
    tasks = [
        task(1, [cat, region("dog", keyframe(1, 0, 0, 5, 5)), region("cat", keyframe(2, 0, 0, 5, 5), from_name="other"),
                 {"from_name": "box", "type": "rectanglelabels", "value": {}}]),
        task(2, [cat], was_cancelled=True),
        {"id": 3, "data": {"video": "/v3.mp4"}, "annotations": []},
        {"id": 4, "data": {"image": "/i.jpg"}, "annotations": [{"id": 40, "result": []}]},
        task(5, []),
    ]
    videos = annotated_videos(tasks, CONTROLS)
    assert [(v.task_id, v.url, len(v.regions), v.fps) for v in videos] == \
        [(1, "/data/upload/1/clip1.mp4", 1, 25.0), (5, "/data/upload/1/clip5.mp4", 0, 25.0)]
    assert video_frame_examples(videos[1], INFO) == []  # nothing annotated: no span to sample


@pytest.mark.parametrize("every,frames", [(3, [2, 3, 6, 8, 9, 10, 12, 14]), (4, [2, 4, 8, 10, 12, 14]),
                                          (5, [2, 5, 8, 10, 14]), (100, [2, 8, 10, 14])])
def test_keyframes_plus_every_mth_frame_of_the_annotated_span(every, frames):
    # LS frames 3 → 9 moving right then ended; a second box LS frames 11 → 15 standing still, ended
    cat = region("cat", keyframe(3, 0, 0, 10, 20), keyframe(9, 30, 0, 10, 20, enabled=False),
                 keyframe(11, 50, 50, 10, 20), keyframe(15, 50, 50, 10, 20, enabled=False))
    (video,) = annotated_videos([task(1, [cat])], CONTROLS)
    examples = video_frame_examples(video, INFO, every)
    assert [e.frame for e in examples] == frames
    by_frame = {e.frame: e for e in examples}
    assert [f for f, e in by_frame.items() if e.keyframe] == [2, 8, 10, 14]
    # interpolated between keyframes: x from 0 to 30 % over 6 frames; 200 x 100 px frame
    if 4 in by_frame:
        assert by_frame[4].boxes[0] == pytest.approx([20, 0, 40, 20])
    if 3 in by_frame:
        assert by_frame[3].boxes[0] == pytest.approx([10, 0, 30, 20]) and not by_frame[3].keyframe
    assert by_frame[8].boxes[0] == pytest.approx([60, 0, 80, 20])  # the disabled keyframe's own frame shows it
    assert by_frame[10].labels == ("cat",) and by_frame[10].image_size == (200, 100)
    negatives = [e.frame for e in examples if len(e.boxes) == 0]
    assert negatives == [f for f in frames if f == 9]  # frame 9 is hidden: between the two lifespans
    assert by_frame[10].boxes_for(400, 50)[0] == pytest.approx([200, 25, 240, 35])


def test_label_studio_frames_are_matched_by_time():
    # config at 24 fps on a 25 fps video: LS frame 25 is at 1.0 s = decoded frame 25
    controls = parse_label_config(CONFIG.format(fps=24)).controls
    cat = region("cat", keyframe(1, 0, 0, 10, 10), keyframe(25, 0, 0, 10, 10, enabled=False))
    (video,) = annotated_videos([task(1, [cat])], controls)
    info = VideoInfo(fps=25.0, frame_count=50, duration_s=2.0, width=200, height=100)
    examples = video_frame_examples(video, info, every=100)
    assert [(e.frame, e.keyframe) for e in examples] == [(0, True), (25, True)]


def test_malformed_annotation_names_the_task():
    bad = region("cat", {"frame": "one", "x": 0, "y": 0, "width": 1, "height": 1})
    (video,) = annotated_videos([task(7, [bad])], CONTROLS)
    with pytest.raises(BadRequest, match="task 7"):
        video_frame_examples(video, INFO)


def test_examples_point_at_the_objects_in_decoded_frames(tmp_path):
    """An annotation made from the known boxes of a real video: the examples' boxes crop the pasted objects."""
    scene = pan_scene(60)
    path = write_video(tmp_path / "pan.mp4", scene.frames, scene.fps)
    info = probe_video(path)
    truth_tracks = []
    for n, (label, boxes) in enumerate(scene.boxes.items(), start=1):
        seen = np.flatnonzero(~np.isnan(boxes[:, 0]))
        truth_tracks.append(Track(n, label, seen, boxes[seen], np.ones(len(seen))))
    regions = tracks_to_regions(truth_tracks, CONTROLS[0], info, max_gap=1, min_iou=0.97)
    (video,) = annotated_videos([task(1, regions)], CONTROLS)
    examples = video_frame_examples(video, info, every=10)
    keyframes = sorted(e.frame for e in examples if e.keyframe)
    assert set(range(0, 60, 10)) <= {e.frame for e in examples} and len(keyframes) < 15
    patches = {"cat": cat_patch(), "cup": cup_patch()}
    pairs = example_images(path, examples)
    assert [e.frame for e, _ in pairs] == [e.frame for e in examples]
    for example, image in pairs:
        assert image.shape == (info.height, info.width, 3)
        expected = {label for label, boxes in scene.boxes.items() if not np.isnan(boxes[example.frame, 0])}
        assert set(example.labels) == expected, example.frame
        for box, label in zip(example.boxes, example.labels):
            assert box_iou(box, scene.boxes[label][example.frame])[0, 0] > 0.9
            x1, y1, x2, y2 = np.round(box).astype(int)
            ph, pw = patches[label].shape[:2]
            crop = image[y1:y1 + ph, x1:x1 + pw].astype(int)
            assert np.abs(crop - patches[label]).mean() < 12, (label, example.frame)
