"""The models one worker process serves with, each built on first use and kept (never per request, never at
import): Grounding DINO, SAM, SAM 3, the SAM 2 video tracker and the image classifier named in the settings, and the
image embedder. A model loads only when a request or job needs it (`USED_BY` says what for; `/health` shows it with
each model's state and, when it failed, why)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from backend.adapters.base import LazyModel
from backend.adapters.classifier import ImageClassifier, build_classifier
from backend.adapters.embedder import ImageEmbedder
from backend.adapters.grounding_dino import GroundingDinoDetector
from backend.adapters.hub import source_available
from backend.adapters.sam import SamSegmenter
from backend.adapters.sam2_video import VideoObjectTracker
from backend.adapters.sam3 import Sam3ConceptSegmenter
from backend.adapters.sam3_video import Sam3VideoTracker
from backend.core.settings import Settings


# what each model is loaded for (it loads on the first request that needs it, or at start-up for the serving pipeline)
USED_BY = {
    "detector": "grounded pipeline (boxes from label prompts)",
    "sam": "masks of the grounded and trained pipelines; smart tools (clicks, rectangles)",
    "classifier": "lime pipeline; cascade mode of grounded",
    "embedder": "task clusters; the review page's embedding map",
    "sam3": "sam3 pipeline on images (instances of label prompts)",
    "sam3_video": "sam3 pipeline on video tasks (instances of label prompts found and followed through the clip)",
    "video_tracker": "carrying an annotator's video boxes through the following frames",
}


@dataclass(frozen=True)
class ModelSet:
    detector: LazyModel[GroundingDinoDetector]
    sam: LazyModel[SamSegmenter]
    classifier: LazyModel[ImageClassifier]
    device: str
    onnx_dir: Path  # where CPU classifiers keep their ONNX export
    embedder: LazyModel[ImageEmbedder] | None = None
    sam3: LazyModel[Sam3ConceptSegmenter] | None = None
    video_tracker: LazyModel[VideoObjectTracker] | None = None
    sam3_video: LazyModel[Sam3VideoTracker] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, device: str) -> "ModelSet":
        s, onnx_dir = settings, settings.layout.onnx_cache
        return cls(
            LazyModel("detector", s.detector_model, lambda: GroundingDinoDetector(s.detector_model, device),
                      lambda: source_available(s.detector_model)),
            LazyModel("sam", s.sam_model, lambda: SamSegmenter(s.sam_model, device, s.embedding_cache_size),
                      lambda: source_available(s.sam_model)),
            LazyModel("classifier", s.classifier_model, lambda: build_classifier(s.classifier_model, device, onnx_dir)),
            device, onnx_dir, LazyModel("embedder", ImageEmbedder.name, lambda: ImageEmbedder(device)),
            LazyModel("sam3", s.sam3_model, lambda: Sam3ConceptSegmenter(s.sam3_model, device),
                      lambda: source_available(s.sam3_model)),
            LazyModel("video_tracker", s.video_tracker_model,
                      lambda: VideoObjectTracker(s.video_tracker_model, device),
                      lambda: source_available(s.video_tracker_model)),
            LazyModel("sam3_video", s.sam3_model, lambda: Sam3VideoTracker(s.sam3_model, device),
                      lambda: source_available(s.sam3_model)))

    def classifier_at(self, role: str, path: Path, version: str) -> LazyModel[ImageClassifier]:
        """A lazily built classifier from a directory holding `classifier.pt` (a project's trained version)."""
        return LazyModel(role, version, lambda: build_classifier(str(path), self.device, self.onnx_dir))

    def status(self) -> dict:
        """Per model: source, state ("ready", "not loaded", "failed"), error, load time."""
        models = (self.detector, self.sam, self.classifier, self.embedder, self.sam3, self.sam3_video,
                  self.video_tracker)
        return {m.role: {**m.status(), "used_by": USED_BY[m.role]} for m in models if m is not None}
