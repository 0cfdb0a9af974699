"""One prediction request, resolved once: what `/predict` and each chunk of a predict job hand to
`backend.predictions.tasks.Predictor`."""

from __future__ import annotations

from dataclasses import dataclass, replace

from backend.core.device import PREDICT
from backend.core.ontology import Ontology
from backend.core.params import PredictParams
from backend.pipelines.base import Pipeline


@dataclass(frozen=True)
class PredictRequest:
    """pipeline: resolved once for the request or job (`PipelineSelector.resolve`), so every prediction carries its
    `model_version`; ontology and params: the project's label config and predict params; priority: the device
    priority (`backend.core.device`); context: Label Studio's `params.context` (the annotator's regions of an
    interactive request; None in jobs)."""

    pipeline: Pipeline
    ontology: Ontology
    params: PredictParams
    priority: int = PREDICT
    context: dict | None = None

    def restricted(self, ontology: Ontology) -> "PredictRequest":
        """The same request over part of the label config (its image controls, one video control)."""
        return replace(self, ontology=ontology)
