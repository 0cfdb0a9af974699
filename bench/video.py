"""Video path benchmark: a real encoded video (a camera pan over a real photo with a cat and a cup moving at known
boxes, `tests/video_scenes.py`), the project's trained detector (trained here on the annotated frames of the same
scene, as a `train` job does from `videorectangle` annotations), every k-th frame.

- frames/s of the video path (decode, device batches of 8, ByteTrack linking, keyframe reduction) against calling
  the image pipeline frame by frame (batches of 1, same decode and linking);
- keyframes emitted against the frames with a tracked box, and the interpolation error: the lowest IoU between
  Label Studio's interpolation of the emitted keyframes and the tracked per-frame boxes.

Usage: python bench/video.py [--frames 100] [--step 3] [--train-s 120] [--device cpu|cuda]
Ends with one JSON line: frames_per_s, framewise_frames_per_s, speedup, keyframes, frames_with_detections,
interp_iou_min, tracks, device.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from backend.adapters.base import LazyModel  # noqa: E402
from backend.adapters.trained_detector import TrainedDetector  # noqa: E402
from backend.core.params import PredictParams  # noqa: E402
from backend.labelstudio.config import parse_label_config  # noqa: E402
from backend.labelstudio.keyframes import interpolate_keyframes, pairwise_iou, reduce_keyframes  # noqa: E402
from backend.labelstudio.video import probe_video, read_frames  # noqa: E402
from backend.models.detector import DetectorSpec, build_detector  # noqa: E402
from backend.models.detector_io import save_detector  # noqa: E402
from backend.pipelines.tracking import TrackingParams, detect_and_track  # noqa: E402
from backend.pipelines.trained import TrainedDetectorPipeline  # noqa: E402
from backend.training.detector import TrainConfig, train_detector  # noqa: E402
from tests.video_scenes import pan_scene, write_video  # noqa: E402

CONFIG = ('<View><Video name="video" value="$video" framerate="25"/><VideoRectangle name="box" toName="video"/>'
          '<Labels name="l" toName="video"><Label value="cat"/><Label value="cup"/></Labels></View>')
LABELS = ["cat", "cup"]


def trained_pipeline(scene, device: str, budget_s: float, workdir: Path) -> TrainedDetectorPipeline:
    """A detector trained on every 2nd frame of the scene with its true boxes, loaded the way serving loads it."""
    items = []
    for i in range(0, len(scene.frames), 2):
        boxes = [scene.boxes[label][i] for label in LABELS if not np.isnan(scene.boxes[label][i, 0])]
        labels = [LABELS.index(label) + 1 for label in LABELS if not np.isnan(scene.boxes[label][i, 0])]
        items.append((scene.frames[i], np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64)))
    model = build_detector(DetectorSpec(num_classes=2, min_size=240, max_size=480, train_sizes=(180, 300)))
    train_detector(model, items, device, TrainConfig(epochs=200, time_budget_s=budget_s))
    save_detector(workdir, model, LABELS, {})
    detector = LazyModel("detector", "bench", lambda: TrainedDetector(workdir, device))
    return TrainedDetectorPipeline(detector, "bench-detector", LazyModel("sam", "none", lambda: None))


def run(path: Path, pipeline, params: PredictParams, batch: int) -> tuple[list, float, int]:
    """(tracks, seconds, frames) of the video path with device batches of `batch` frames."""
    ontology = parse_label_config(CONFIG)
    info = probe_video(path)
    started = time.perf_counter()
    frames = list(read_frames(path, params.video_frame_step, params.video_max_frames))
    tracks = detect_and_track(iter(frames), lambda images: pipeline.predict(images, ontology, params), info.fps,
                              params.video_frame_step, batch, TrackingParams.of(params))
    for track in tracks:  # what serving emits: the keyframes of each track
        reduce_keyframes(track.frames, track.xyxy, params.keyframe_iou, params.keyframe_max_gap)
    return tracks, time.perf_counter() - started, len(frames)


def keyframe_figures(tracks, params: PredictParams) -> tuple[int, int, float]:
    """(keyframes emitted, tracked boxes = the frames with a detection summed over tracks, lowest IoU of the
    interpolation against the tracked boxes)."""
    keyframes, boxes_tracked, worst = 0, 0, 1.0
    for track in tracks:
        reduced = reduce_keyframes(track.frames, track.xyxy, params.keyframe_iou, params.keyframe_max_gap)
        keyframes += len(reduced.frames)
        boxes_tracked += len(track)
        shown, boxes, _ = interpolate_keyframes(reduced)
        at = {int(f): i for i, f in enumerate(shown)}
        for frame, box in zip(track.frames, track.xyxy):
            if int(frame) in at:
                worst = min(worst, float(pairwise_iou(boxes[at[int(frame)]][None], box[None])[0]))
    return keyframes, boxes_tracked, worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100, help="frames of the test scene (at most 100)")
    parser.add_argument("--step", type=int, default=3, help="video_frame_step")
    parser.add_argument("--train-s", type=float, default=120.0, help="detector training budget")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-video-"))
    scene = pan_scene(args.frames)
    path = write_video(workdir / "pan.mp4", scene.frames, scene.fps)
    pipeline = trained_pipeline(scene, args.device, args.train_s, workdir)
    params = PredictParams().with_overrides({"video_frame_step": args.step, "video_max_frames": 100_000,
                                             "box_threshold": 0.3, "keyframe_max_gap": 2 * args.step})
    run(path, pipeline, params, 8)  # warm-up: weights loaded, kernels chosen
    tracks, seconds, frames = run(path, pipeline, params, 8)
    _, framewise_seconds, _ = run(path, pipeline, params, 1)
    keyframes, frames_with, worst = keyframe_figures(tracks, params)
    rate, framewise = frames / seconds, frames / framewise_seconds
    print(f"{frames} sampled frames of {args.frames} (every {args.step}): video path {rate:.2f} frames/s, "
          f"frame by frame {framewise:.2f} frames/s; {len(tracks)} tracks, {keyframes} keyframes for "
          f"{frames_with} tracked boxes (frames with a detection, per track), lowest interpolation IoU {worst:.3f}")
    print(json.dumps({"frames_per_s": round(rate, 3), "framewise_frames_per_s": round(framewise, 3),
                      "speedup": round(rate / framewise, 3), "keyframes": keyframes,
                      "frames_with_detections": frames_with, "interp_iou_min": round(worst, 4),
                      "tracks": len(tracks), "sampled_frames": frames, "frame_step": args.step,
                      "device": args.device}))


if __name__ == "__main__":
    main()
