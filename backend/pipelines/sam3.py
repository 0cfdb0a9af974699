"""`PIPELINE=sam3`: label prompts → SAM 3 instances (box, score, mask) of every label in one model.

The label values (or their `prompt`s) are SAM 3's concept prompts; each instance is labelled with the exact label value
whose prompt found it. Instances scoring at least `concept_threshold` are kept, then class-aware NMS and
`max_regions` per image. Masks are kept only when the config has a Brush or Polygon control (Rectangle-only projects
get boxes, and no mask memory is held).

Video tasks (`concept_tracks`): SAM 3's video model (the same checkpoint) finds every instance of each prompt on the
sampled frames and follows it with its own memory tracker, so a track is one object through the clip (no detection
linking by box overlap); tracks shorter than `track_min_length` sampled frames are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from contextlib import nullcontext
from typing import Callable, ContextManager, Iterable

import numpy as np

from backend.adapters.base import LazyModel
from backend.adapters.hub import short_name
from backend.adapters.sam3 import ConceptInstances, Sam3ConceptSegmenter
from backend.adapters.sam3_video import Sam3VideoTracker
from backend.core.detections import Detections, class_aware_nms
from backend.core.errors import ModelUnavailable
from backend.core.ontology import Ontology
from backend.core.params import PredictParams
from backend.core.sizes import size_of
from backend.core.tracks import Track, VideoFrame
from backend.pipelines.base import Steps
from backend.pipelines.coverage import Coverage
from backend.pipelines.grounded import prompts_for


@dataclass
class _ConceptWork:
    """prompts: the concept prompts; owners: the label value each prompt stands for."""

    images: list[np.ndarray]
    prompts: list[str]
    owners: list[str]
    params: PredictParams
    with_masks: bool
    found: list[ConceptInstances] | None = None


class Sam3Pipeline(Steps):
    name = "sam3"

    def __init__(self, model: LazyModel[Sam3ConceptSegmenter], video: LazyModel[Sam3VideoTracker] | None = None):
        self.model = model
        self.video = video  # concept tracking for video tasks (None: frames go through `predict` and ByteTrack)

    @property
    def model_version(self) -> str:
        return f"sam3-{short_name(self.model.source)}"

    def required_models(self) -> list[LazyModel]:
        return [self.model]

    def load(self, ontology: Ontology | None = None) -> None:
        """The video model alone for a video-only config when it loads (its clips never need the image model),
        else the image model."""
        videos_only = ontology is not None and bool(ontology.controls) and all(c.is_video for c in ontology.controls)
        if videos_only and self.video is not None and self.video.try_get() is not None:
            return
        self.model.get()

    def coverage(self, ontology: Ontology, params: PredictParams) -> Coverage:
        """Every label, through its prompts (open vocabulary)."""
        prompts, owners = prompts_for(ontology)
        predicted = {label: "concepts " + ", ".join(repr(p) for p, o in zip(prompts, owners) if o == label)
                     for label in ontology.labels}
        return Coverage(self.model_version, predicted, {})

    def prepare(self, images: list[np.ndarray], ontology: Ontology, params: PredictParams) -> _ConceptWork:
        prompts, owners = prompts_for(ontology)
        return _ConceptWork(images, prompts, owners, params, ontology.wants_masks)

    def forward(self, work: _ConceptWork) -> _ConceptWork:
        """uint8 (H, W, 3) images → SAM 3's instances of every prompt (masks only when the config wants them)."""
        work.found = self.model.get().segment(work.images, work.prompts, work.params.concept_threshold,
                                              work.params.mask_threshold, work.with_masks)
        return work

    def finish(self, work: _ConceptWork) -> list[Detections]:
        """Instances → `Detections` labelled with the prompts' label values; class-aware NMS, `max_regions`."""
        out = []
        for image, instances in zip(work.images, work.found):
            labels = [work.owners[i] for i in instances.prompt_index]
            dets = Detections(instances.xyxy, instances.scores.clip(0, 1), labels, size_of(image), instances.masks)
            out.append(class_aware_nms(dets.clipped(), work.params.nms_iou, work.params.max_regions))
        return out

    def concept_tracks(self, frames: Iterable[VideoFrame], ontology: Ontology, params: PredictParams,
                       hold: Callable[[], ContextManager] = nullcontext,
                       stop: Callable[[], bool] | None = None) -> list[Track]:
        """Sampled frames of one video → every instance of every label's prompts followed through them (`hold()`:
        the device, entered around each frame's model call). Track frames are the `VideoFrame.index`es, boxes pixels of the frames given; tracks are
        numbered 1, 2, ... by first frame, then label. Raises `ModelUnavailable` when the video model cannot load
        (before any frame is read)."""
        if self.video is None:
            raise ModelUnavailable("the sam3 pipeline has no video model")
        tracker = self.video.get()
        prompts, owners = prompts_for(ontology)
        indices: list[int] = []

        def images():
            for frame in frames:
                indices.append(frame.index)
                yield frame.image

        found = tracker.track(images(), prompts, params.concept_threshold, stop=stop, hold=hold)
        tracks = [Track(0, owners[t.prompt_index], [indices[i] for i in t.frames], t.xyxy, t.scores)
                  for t in found if len(t.frames) >= params.track_min_length]
        tracks.sort(key=lambda t: (int(t.frames[0]), t.label, tuple(t.xyxy[0])))
        return [Track(n, t.label, t.frames, t.xyxy, t.scores) for n, t in enumerate(tracks, start=1)]
