"""SAM 3 video concept tracking (`backend.adapters.sam3_video`) with a tiny random-init model on CPU.

Random weights track nothing meaningful, so these tests check the contract (shapes, dtypes, frame ranges, prompt
indices, limits, errors), determinism, and that pruning the inference session keeps memory bounded without changing
any output. Threshold 0 lets the random detector's ~0.25 scores start objects."""

import numpy as np
import pytest
import torch

from backend.adapters.sam3_video import ConceptTrack, Sam3VideoTracker, _session_entries
from tests.tiny_sam3_video import save_sam3_video
from tests.tiny_video_models import moving_square

pytestmark = pytest.mark.usefixtures("one_torch_thread")

H, W = 120, 160
N = 12
PROMPTS = ["cat", "stop sign", "cat"]  # the repeated prompt shares the first one's index


@pytest.fixture(scope="module")
def tracker(tmp_path_factory) -> Sam3VideoTracker:
    return Sam3VideoTracker(str(save_sam3_video(tmp_path_factory.mktemp("sam3_video"))), "cpu")


def clip(n: int, h: int = H, w: int = W, seed: int = 0):
    return moving_square(n, h, w, 4, seed, top=30, side=40, left=10)


def same(a: list[ConceptTrack], b: list[ConceptTrack]) -> bool:
    return len(a) == len(b) and all(
        x.obj_id == y.obj_id and x.prompt_index == y.prompt_index and np.array_equal(x.frames, y.frames)
        and np.array_equal(x.xyxy, y.xyxy) and np.array_equal(x.scores, y.scores) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def reference(tracker):
    """`N` frames of `clip` tracked (from a generator), and what the session held after each frame."""
    entries = []
    prune = tracker._prune

    def recording(session, index):
        prune(session, index)
        entries.append(_session_entries(session))

    tracker._prune = recording
    try:
        tracks = tracker.track(clip(N), PROMPTS, threshold=0.0)
    finally:
        del tracker._prune
    return tracks, entries


def test_tracks_for_two_prompts(tracker, reference):
    tracks, _ = reference
    assert tracks, "random weights at threshold 0 should start objects"
    assert {t.prompt_index for t in tracks} == {0, 1}
    assert [t.obj_id for t in tracks] == sorted({t.obj_id for t in tracks})
    assert max(len(t.frames) for t in tracks) > 1  # objects are followed, not re-detected each frame
    for track in tracks:
        k = len(track.frames)
        assert k > 0
        assert track.frames.dtype == np.int64 and track.frames.shape == (k,)
        assert track.xyxy.dtype == np.float32 and track.xyxy.shape == (k, 4)
        assert track.scores.dtype == np.float32 and track.scores.shape == (k,)
        assert 0 <= track.frames[0] and track.frames[-1] < N and (np.diff(track.frames) > 0).all()
        x0, y0, x1, y1 = track.xyxy.T
        assert (x0 >= 0).all() and (y0 >= 0).all() and (x1 <= W).all() and (y1 <= H).all()
        assert (x1 > x0).all() and (y1 > y0).all()
        assert ((track.scores >= 0) & (track.scores <= 1)).all()
    # threshold 0 is the model's own detection threshold, and its new-object threshold (the tiny checkpoint's margin
    # between the two is 0)
    assert tracker.model.score_threshold_detection == 0.0 and tracker.model.new_det_thresh == 0.0


def test_same_input_same_output_and_list_equals_generator(tracker, reference):
    assert same(reference[0], tracker.track(list(clip(N)), PROMPTS, threshold=0.0))
    other = tracker.track(clip(N, seed=1), PROMPTS, threshold=0.0)  # different pixels: the boxes must notice
    assert not same(reference[0], other)


def test_image_detector_loads_from_the_same_checkpoint(tracker):
    """facebook/sam3 holds both models: the image adapter reads the detector out of the video checkpoint."""
    from backend.adapters.sam3 import Sam3ConceptSegmenter

    segmenter = Sam3ConceptSegmenter(tracker.name, "cpu")
    detector = tracker.model.detector_model.state_dict()
    loaded = segmenter.model.state_dict()
    assert loaded.keys() == detector.keys()
    assert all(torch.equal(loaded[key], detector[key]) for key in detector)
    found = segmenter.segment([next(clip(1))], ["cat", "stop sign"], threshold=0.0, with_masks=False)[0]
    assert len(found.scores) > 0 and set(found.prompt_index.tolist()) <= {0, 1}


def test_max_frames_stop_and_lazy_reading(tracker):
    read = []

    def counted():
        for i, frame in enumerate(clip(100)):
            read.append(i)
            yield frame

    tracks = tracker.track(counted(), PROMPTS, threshold=0.0, max_frames=3)
    assert tracks and max(t.frames.max() for t in tracks) == 2
    assert len(read) == 3  # no frame is read past the cap
    read.clear()
    assert tracker.track(counted(), PROMPTS, threshold=0.0, max_frames=0) == [] and read == []

    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 2  # frames 0 and 1 pass, then it stops

    tracks = tracker.track(counted(), PROMPTS, threshold=0.0, stop=stop)
    assert tracks and max(t.frames.max() for t in tracks) == 1
    assert len(calls) == 3 and len(read) == 2


def test_frame_of_another_size_raises(tracker):
    frames = list(clip(2)) + [np.zeros((H + 2, W, 3), np.uint8)]
    with pytest.raises(ValueError, match="frame 2"):
        tracker.track(frames, PROMPTS, threshold=0.0)
    with pytest.raises(ValueError, match="frame 0"):
        tracker.track([np.zeros((H, W), np.uint8)], PROMPTS)
    with pytest.raises(ValueError, match="frame 0"):
        tracker.track([np.zeros((H, W, 3), np.float32)], PROMPTS)


def test_bad_arguments(tracker):
    def untouched():
        raise AssertionError("no frame should be read")
        yield

    assert tracker.track(untouched(), []) == []
    for bad in ([""], ["cat", 3]):
        with pytest.raises(ValueError, match="prompt"):
            tracker.track(untouched(), bad)
    long = tracker.track(clip(2), ["cat " * 40], threshold=0.0)  # cut to what the text encoder reads, not fatal
    assert long and all(t.prompt_index == 0 for t in long)
    for threshold in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="threshold"):
            tracker.track(untouched(), ["cat"], threshold=threshold)
    with pytest.raises(ValueError, match="max_frames"):
        tracker.track(untouched(), ["cat"], max_frames=-1)


def test_session_stays_bounded_and_pruning_changes_nothing(tracker, reference, monkeypatch):
    pruned, entries = reference
    assert len(entries) == N  # one prune per frame
    assert (tracker.memory_frames, tracker.pointer_frames, tracker.cond_frames) == (2, 3, 2)
    bounded = {"pixel_frames": 0, "vision_features": 0, "cond_memories": 2, "non_cond_outputs": 3,
               "spatial_memories": 2, "mask_logits": 0, "tracked_marks": 0, "mask_inputs": 0, "score_frames": 0,
               "suppression_frames": 0, "hotstart_marks": 2, "shared_cond_memories": 0}
    worst = {key: max(e[key] for e in entries) for key in bounded}
    assert worst == bounded
    assert {key: entries[-1][key] for key in bounded} == bounded  # the windows were full at the end
    # conditioning frames keep only their object pointer once out of the window (transformers reads them all):
    # the first detection plus one re-conditioning every 2nd frame
    assert 2 < max(e["cond_outputs"] for e in entries) <= 1 + N // 2

    monkeypatch.setattr(tracker, "_prune", lambda session, index: None)  # the session keeps everything
    assert same(pruned, tracker.track(clip(N), PROMPTS, threshold=0.0))

    monkeypatch.undo()
    monkeypatch.setattr(tracker, "pointer_frames", 2)  # dropping object pointers the tracker reads must show
    assert not same(pruned, tracker.track(clip(N), PROMPTS, threshold=0.0))
    monkeypatch.undo()
    monkeypatch.setattr(tracker, "cond_frames", 1)  # and so must dropping the spatial memory of one it reads
    with pytest.raises(KeyError, match="maskmem_features"):
        tracker.track(clip(N), PROMPTS, threshold=0.0)
