"""The PyAV decoder on real encoded videos of real photos: metadata, sampling, limits, rotation, variable rate, errors."""

from pathlib import Path

import av
import numpy as np
import pytest

from backend.core.errors import TaskError
from backend.labelstudio.video import probe_video, read_frames, read_frames_at
from tests.video_scenes import FRAME_H, FRAME_W, pan_scene, write_video

N_FRAMES, FPS = 40, 25


@pytest.fixture(scope="module")
def scene():
    return pan_scene(N_FRAMES, FPS)


@pytest.fixture(scope="module")
def videos(scene, tmp_path_factory):
    """(codec, container suffix) → a file of the scene."""
    root = tmp_path_factory.mktemp("videos")
    return {(codec, suffix): write_video(root / f"pan-{codec}.{suffix}", scene.frames, FPS, codec)
            for codec, suffix in [("libx264", "mp4"), ("mpeg4", "mp4"), ("libx264", "mkv")]}


def _close(decoded: np.ndarray, source: np.ndarray) -> float:
    """Mean absolute difference per channel (lossy codec + 4:2:0 chroma: a few grey levels)."""
    return float(np.abs(decoded.astype(np.int16) - source.astype(np.int16)).mean())


@pytest.mark.parametrize("codec,suffix", [("libx264", "mp4"), ("mpeg4", "mp4"), ("libx264", "mkv")])
def test_probe(videos, codec, suffix):
    info = probe_video(videos[(codec, suffix)])
    assert (info.fps, info.frame_count, info.width, info.height, info.rotation) == (FPS, N_FRAMES, FRAME_W, FRAME_H, 0)
    assert info.duration_s == pytest.approx(N_FRAMES / FPS, abs=1 / FPS)
    assert info.frame_size == (FRAME_W, FRAME_H)


@pytest.mark.parametrize("codec,suffix", [("libx264", "mp4"), ("mpeg4", "mp4"), ("libx264", "mkv")])
@pytest.mark.parametrize("every", [1, 3, 7])
def test_every_kth_frame_is_the_right_picture(scene, videos, codec, suffix, every):
    frames = list(read_frames(videos[(codec, suffix)], every=every))
    assert [f.index for f in frames] == list(range(0, N_FRAMES, every))
    assert [f.time_s for f in frames] == pytest.approx([i / FPS for i in range(0, N_FRAMES, every)], abs=1e-3)
    for f in frames:
        assert f.image.dtype == np.uint8 and f.image.shape == (FRAME_H, FRAME_W, 3)
        assert _close(f.image, scene.frames[f.index]) < 6
        # the pan moves the picture: a neighbouring source frame is clearly further away
        other = scene.frames[f.index + 1 if f.index + 1 < N_FRAMES else f.index - 1]
        assert _close(f.image, other) > 2 * _close(f.image, scene.frames[f.index])


@pytest.mark.parametrize("every,max_frames,max_seconds,expected", [
    (1, 5, None, [0, 1, 2, 3, 4]),
    (5, 3, None, [0, 5, 10]),
    (5, None, 0.5, [0, 5, 10]),           # frame 15 is at 0.6 s
    (4, 100, 0.4, [0, 4, 8]),             # frame 10 is at exactly 0.4 s: not included
    (10, None, None, [0, 10, 20, 30]),
    (1, 0, None, []),
])
def test_limits(videos, every, max_frames, max_seconds, expected):
    frames = read_frames(videos[("libx264", "mp4")], every, max_frames=max_frames, max_seconds=max_seconds)
    assert [f.index for f in frames] == expected


def test_read_frames_at_matches_sequential_decoding(videos):
    path = videos[("libx264", "mp4")]
    every_frame = {f.index: f.image for f in read_frames(path)}
    picked = read_frames_at(path, [17, 3, 39, 3, 500])
    assert sorted(picked) == [3, 17, 39]  # 500 is past the end
    for index, image in picked.items():
        assert np.array_equal(image, every_frame[index])


@pytest.mark.parametrize("rotation,turns", [(90, 1), (-90, -1), (180, 2)])
def test_rotation_metadata_is_applied(scene, tmp_path, rotation, turns):
    path = write_video(tmp_path / f"rot{rotation}.mp4", scene.frames[:10], FPS, rotation=rotation)
    info = probe_video(path)
    assert info.rotation == rotation
    upright = (FRAME_H, FRAME_W) if rotation in (90, -90) else (FRAME_W, FRAME_H)
    assert info.frame_size == upright
    (frame,) = read_frames(path, every=5, max_frames=1)
    expected = np.rot90(scene.frames[0], k=turns)
    assert frame.image.shape == (upright[1], upright[0], 3)
    assert _close(frame.image, expected) < 6
    wrong = np.rot90(scene.frames[0], k=turns + 2)
    assert _close(frame.image, wrong) > 30


def test_variable_frame_rate_indices_follow_time(scene, tmp_path):
    times = [0.0, 0.04, 0.2, 0.24, 0.28, 0.6, 0.64, 1.0]
    path = write_video(tmp_path / "vfr.mp4", scene.frames[:len(times)], FPS, times_s=times)
    fps = probe_video(path).fps
    frames = list(read_frames(path))
    indices = [f.index for f in frames]
    assert all(np.diff(indices) > 0) and indices[0] == 0 and frames[-1].time_s == pytest.approx(1.0, abs=2e-3)
    # each index is the first frame presented at that rounded time, with that frame's picture
    first_at: dict[int, int] = {}
    for n, t in enumerate(times):
        first_at.setdefault(int(round(t * fps)), n)
    assert indices == sorted(first_at)
    for f in frames:
        source = first_at[f.index]
        assert f.time_s == pytest.approx(times[source], abs=2e-3)
        assert _close(f.image, scene.frames[source]) < 6
    # sampling takes the first frame at or past each step
    sampled = [f.index for f in read_frames(path, every=3)]
    expected, wanted = [], 0
    for i in indices:
        if i >= wanted:
            expected.append(i)
            wanted = i + 3
    assert sampled == expected and len(sampled) < len(indices)


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.parametrize("make,message", [
    (lambda p, v: p / "missing.mp4", "cannot be read"),
    (lambda p, v: (p / "empty.mp4").write_bytes(b"") and p / "empty.mp4" or p / "empty.mp4", "cannot be read"),
    (lambda p, v: (p / "text.mp4").write_text("not a video at all\n" * 50) and p / "text.mp4", "cannot be read"),
    (lambda p, v: (p / "half.mp4").write_bytes(v.read_bytes()[: v.stat().st_size // 2]) and p / "half.mp4",
     "cannot be read"),
    (lambda p, v: _audio_only(p / "sound.wav"), "no video stream"),
])
def test_unreadable_files_raise_task_error(videos, tmp_path, make, message):
    path = make(tmp_path, videos[("libx264", "mp4")])
    with pytest.raises(TaskError, match=message) as caught:
        probe_video(path)
    assert caught.value.status == 422 and Path(path).name in caught.value.message
    with pytest.raises(TaskError, match=message):
        list(read_frames(path))
