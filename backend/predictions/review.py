"""The review-priority score of each prediction (Label Studio sorts predictions by `score`, lowest first, so
annotators and reviewers start where the pre-labels are least trustworthy).

`review_score` "mirror" (default) runs the pipeline on each image and on its mirror in the same batch and scores
the agreement of the two with the region confidences (`backend.pipelines.scoring`); "confidence" uses the region
confidences alone (no second pass). A project's calibration (isotonic, fit on its reviewed tasks) maps the score
to the probability that the pre-label is accepted unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.core.detections import Detections
from backend.core.ontology import Ontology
from backend.core.params import PredictParams
from backend.core.sizes import size_of
from backend.pipelines import scoring
from backend.pipelines.base import Pipeline
from backend.pipelines.selection import PipelineSelector


@dataclass(frozen=True)
class ReviewScorer:
    """mode: "mirror" or "confidence"; calibration: a fitted map score → P(accepted unchanged), or None."""

    mode: str = "mirror"
    calibration: object | None = None

    def run(self, selector: PipelineSelector, pipeline: Pipeline, images: list[np.ndarray], ontology: Ontology,
            params: PredictParams, priority: int) -> tuple[Pipeline, list[Detections], list[float]]:
        """(pipeline that ran, one `Detections` per uint8 (H, W, 3) image, one score in [0, 1] per image)."""
        if self.mode != "mirror":
            pipeline, dets = selector.run(pipeline, images, ontology, params, priority)
            return pipeline, dets, [self._calibrated(scoring.confidence_score(d)) for d in dets]
        both = images + [scoring.mirror_image(image) for image in images]
        pipeline, found = selector.run(pipeline, both, ontology, params, priority)
        dets, mirrored = found[:len(images)], found[len(images):]
        scores = [self._calibrated(scoring.review_score(d, scoring.unmirror(m, size_of(image).width)))
                  for d, m, image in zip(dets, mirrored, images)]
        return pipeline, dets, scores

    def _calibrated(self, score: float) -> float:
        """The score (calibrated when the project has a calibration), within [0, 1] as Label Studio requires."""
        score = float(self.calibration.apply(score)) if self.calibration is not None else float(score)
        return min(max(score, 0.0), 1.0)
