"""SAM 2 video box propagation (`backend.adapters.sam2_video`) with a tiny random-init model on CPU.

Random weights track nothing meaningful, so these tests check the contract (shapes, dtypes, frame ranges, limits,
errors), determinism, and that pruning the inference session keeps memory bounded without changing any output."""

import numpy as np
import pytest

from backend.adapters.sam2_video import BoxSeed, PropagatedTrack, VideoObjectTracker, _session_entries
from tests.tiny_video_models import moving_square, save_sam2_video

pytestmark = pytest.mark.usefixtures("one_torch_thread")

H, W = 72, 120


@pytest.fixture(scope="module")
def tracker(tmp_path_factory) -> VideoObjectTracker:
    return VideoObjectTracker(str(save_sam2_video(tmp_path_factory.mktemp("sam2_video"))), "cpu")


def clip(n: int, h: int = H, w: int = W, seed: int = 0):
    return moving_square(n, h, w, 2, seed)


def seeds() -> list[BoxSeed]:
    return [BoxSeed(1, 2, np.array([9, 20, 39, 50], np.float32)), BoxSeed(2, 6, np.array([70, 5, 110, 30], np.float32))]


def same(a: list[PropagatedTrack], b: list[PropagatedTrack]) -> bool:
    return len(a) == len(b) and all(
        x.obj_id == y.obj_id and np.array_equal(x.frames, y.frames) and np.array_equal(x.xyxy, y.xyxy)
        and np.array_equal(x.scores, y.scores) for x, y in zip(a, b))


def test_two_seeds_on_different_frames(tracker):
    n = 20
    tracks = tracker.propagate(list(clip(n)), seeds())
    assert [t.obj_id for t in tracks] == [1, 2]
    for track, seed in zip(tracks, seeds()):
        k = len(track.frames)
        assert k > 0
        assert track.frames.dtype == np.int64 and track.frames.shape == (k,)
        assert track.xyxy.dtype == np.float32 and track.xyxy.shape == (k, 4)
        assert track.scores.dtype == np.float32 and track.scores.shape == (k,)
        assert track.frames[0] == seed.frame and track.frames[-1] < n
        assert (np.diff(track.frames) > 0).all()
        x0, y0, x1, y1 = track.xyxy.T
        assert (x0 >= 0).all() and (y0 >= 0).all() and (x1 <= W).all() and (y1 <= H).all()
        assert (x1 > x0).all() and (y1 > y0).all()
        assert ((track.scores >= 0) & (track.scores <= 1)).all()


def test_same_input_same_output_and_generator_equals_list(tracker):
    first = tracker.propagate(clip(24), seeds())
    assert same(first, tracker.propagate(clip(24), seeds()))
    assert same(first, tracker.propagate(list(clip(24)), seeds()))
    other = tracker.propagate(clip(24, seed=1), seeds())  # different pixels: the scores must notice
    assert not np.array_equal(first[0].scores, other[0].scores)


def test_max_frames_and_lazy_reading(tracker):
    read = []

    def counted():
        for i, frame in enumerate(clip(100)):
            read.append(i)
            yield frame

    tracks = tracker.propagate(counted(), seeds(), max_frames=5)  # frames 2..6 from the first seed on
    assert tracks[0].frames.max() <= 6 and list(tracks[1].frames) in ([], [6])
    assert len(read) <= 8  # it stopped reading right after the cap
    assert len(tracker.propagate(clip(10), seeds(), max_frames=0)[0].frames) == 0


def test_stop_ends_early(tracker):
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 10  # frames 0..9 pass, frame 10 stops

    tracks = tracker.propagate(clip(50), seeds(), stop=stop)
    assert tracks[0].frames.max() <= 9 and tracks[1].frames.max() <= 9
    assert len(calls) == 11


def test_seed_never_reached_gets_an_empty_track(tracker):
    late = BoxSeed(3, 40, np.array([10, 10, 30, 30], np.float32))
    tracks = tracker.propagate(clip(12), seeds()[:1] + [late])
    assert len(tracks[0].frames) > 0
    assert tracks[1].obj_id == 3 and tracks[1].frames.shape == (0,) and tracks[1].xyxy.shape == (0, 4)


@pytest.mark.parametrize("bad, match", [
    (BoxSeed(5, 0, np.array([130, 10, 150, 30], np.float32)), "seed 5"),  # right of the 120-px frame
    (BoxSeed(6, 0, np.array([30, 30, 30, 50], np.float32)), "seed 6"),  # zero width
    (BoxSeed(7, 0, np.array([10, 10, 5, 30], np.float32)), "seed 7"),  # x1 < x0
    (BoxSeed(8, 0, np.array([10, 10, 30], np.float32)), "seed 8"),
    (BoxSeed(9, 0, np.array([np.nan, 10, 30, 30], np.float32)), "seed 9"),
    (BoxSeed(0, 0, np.array([10, 10, 30, 30], np.float32)), "seed 0"),
    (BoxSeed(4, -1, np.array([10, 10, 30, 30], np.float32)), "seed 4"),
    (BoxSeed(1, 3, np.array([10, 10, 30, 30], np.float32)), "seed 1"),  # obj_id 1 twice
])
def test_bad_seed_raises(tracker, bad, match):
    with pytest.raises(ValueError, match=match):
        tracker.propagate(clip(4), seeds()[:1] + [bad])


def test_box_partly_outside_is_clipped(tracker):
    tracks = tracker.propagate(clip(4), [BoxSeed(1, 0, np.array([-20, -5, 40, 40], np.float32))])
    assert len(tracks[0].frames) > 0


def test_frame_of_another_size_raises(tracker):
    frames = list(clip(6)) + [np.zeros((H + 2, W, 3), np.uint8)]
    with pytest.raises(ValueError, match="frame 6"):
        tracker.propagate(frames, seeds())
    with pytest.raises(ValueError, match="frame 0"):
        tracker.propagate([np.zeros((H, W), np.uint8)], seeds())


def test_session_stays_bounded_and_pruning_changes_nothing(tracker, monkeypatch):
    n = 45  # longer than the 15-frame pointer window
    entries = []
    prune = tracker._prune

    def recording(session, index):
        prune(session, index)
        entries.append(_session_entries(session))

    monkeypatch.setattr(tracker, "_prune", recording)
    pruned = tracker.propagate(clip(n), seeds())
    assert len(entries) == n - 2  # one prune per processed frame (from the first seed, frame 2)
    assert tracker.memory_frames == 6 and tracker.pointer_frames == 15
    worst = {key: max(e[key] for e in entries) for key in entries[0]}
    assert worst == {"pixel_frames": 0, "vision_features": 1, "cond_outputs": 1, "non_cond_outputs": 15,
                     "spatial_memories": 6, "mask_logits": 0, "tracked_marks": 15}
    assert entries[-1] == worst  # the windows were full at the end, and never exceeded

    monkeypatch.setattr(tracker, "_prune", lambda session, index: None)  # the session keeps everything
    assert same(pruned, tracker.propagate(clip(n), seeds()))

    monkeypatch.setattr(tracker, "_prune", prune)
    monkeypatch.setattr(tracker, "pointer_frames", 8)  # dropping object pointers SAM 2 reads must show
    assert not same(pruned, tracker.propagate(clip(n), seeds()))
