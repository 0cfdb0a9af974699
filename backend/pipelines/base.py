"""The pipeline protocol: `Ontology + images → list[Detections]` in three steps, as transformers pipelines do.

- `prepare` (CPU, no device): decode-side work such as superpixels, prompt lists, parsing a smart-tool context;
- `forward` (the device, under the process's `DeviceGate`): the model calls;
- `finish` (CPU): NMS, masks → regions, the `Detections` of each image.

`run_pipeline` chains them and holds the device only for `forward`, so one request's CPU work overlaps another's
model calls. What `prepare` returns is opaque to everyone but the pipeline itself.
"""

from __future__ import annotations

from typing import Any, Callable, ContextManager, Iterable, Protocol, runtime_checkable

import numpy as np

from backend.adapters.base import LazyModel
from backend.core.detections import Detections
from backend.core.device import PREDICT, DeviceGate
from backend.core.ontology import Ontology
from backend.core.params import PredictParams
from backend.core.tracks import Track, VideoFrame


class Pipeline(Protocol):
    """What every pipeline exposes. `name` is its `PIPELINE` value; `model_version` what its predictions carry."""

    name: str

    @property
    def model_version(self) -> str: ...

    def required_models(self) -> list[LazyModel]:
        """The models that must load for this pipeline to run (for `auto` selection and `/health`)."""

    def load(self, ontology: Ontology | None = None) -> None:
        """Load the models a request over `ontology` cannot run without (None: any request); `ModelUnavailable` when
        one fails. Optional ones (SAM for masks, a cascade's classifier) still load at their first use."""

    def prepare(self, images: list[np.ndarray], ontology: Ontology, params: PredictParams) -> Any:
        """CPU work on uint8 (H, W, 3) images before the device is needed."""

    def forward(self, prepared: Any) -> Any:
        """The model calls (the caller holds the device)."""

    def finish(self, raw: Any) -> list[Detections]:
        """CPU work after the model calls: one `Detections` per image, in pixels of the images given."""


@runtime_checkable
class VideoTracking(Protocol):
    """A pipeline that follows objects through a video itself, instead of detections per frame linked by ByteTrack
    (`backend.predictions.video`)."""

    def concept_tracks(self, frames: Iterable[VideoFrame], ontology: Ontology, params: PredictParams,
                       hold: Callable[[], ContextManager], stop: Callable[[], bool] | None = None) -> list[Track]:
        """Sampled frames → tracks (frames = `VideoFrame.index`, boxes in pixels of the frames given), entering
        `hold()` (the device gate) around each frame's model call; raises `ModelUnavailable` before reading a frame
        when its video model cannot load."""


def run_pipeline(pipeline: Pipeline, images: list[np.ndarray], ontology: Ontology, params: PredictParams,
                 gate: DeviceGate | None = None, priority: int = PREDICT) -> list[Detections]:
    """prepare → forward (holding `gate` at `priority`, when given and the pipeline's `needs_device(prepared)` says
    so: a pipeline without that method always needs it) → finish."""
    prepared = pipeline.prepare(images, ontology, params)
    needs_device = getattr(pipeline, "needs_device", None)
    if gate is None or (needs_device is not None and not needs_device(prepared)):
        raw = pipeline.forward(prepared)
    else:
        with gate.hold(priority):
            raw = pipeline.forward(prepared)
    return pipeline.finish(raw)


class Steps:
    """Base class of the pipelines here: `predict` runs the three steps without a device gate (tests, benchmarks,
    one-off scripts; the service goes through `run_pipeline` with its gate); `load` loads `required_models()` (the
    ones the pipeline cannot run without)."""

    def load(self, ontology: Ontology | None = None) -> None:
        for model in self.required_models():
            model.get()

    def predict(self, images: list[np.ndarray], ontology: Ontology, params: PredictParams) -> list[Detections]:
        return run_pipeline(self, images, ontology, params)
