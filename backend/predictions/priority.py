"""The review-priority score of each prediction (Label Studio sorts predictions by `score`, lowest first, so annotators
and reviewers start where the pre-labels are least trustworthy).

`review_score` "errors" (default) runs the pipeline on each image and on its mirror in the same batch and scores the
corrections the two views' agreement leaves expected (1 / (1 + E), `backend.predictions.scoring.agreement_errors`: a
task with more doubtful regions comes first); "mirror" scores the same two views' agreement as a mean (how right, not
how much to correct); "confidence" uses the region confidences alone (no second pass). These are raw scores;
`calibrated_score` applies a project's calibration (isotonic, fit on its reviewed tasks by
`backend.jobs.calibration`): the probability that the pre-label is accepted unchanged. A project whose reviewed tasks
showed that its learned region model (`backend.predictions.region_model`) orders them better has that model in its
calibration: the isotonic curve then reads the model's score of the two views instead of the raw one (the count
model's, `backend.predictions.count_model`, or the rate mix's, `backend.predictions.rate_mix`, where chosen after it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.core.detections import Detections
from backend.core.ontology import Ontology
from backend.core.params import PredictParams
from backend.predictions import scoring
from backend.predictions.score_calibration import ScoreCalibration
from backend.pipelines.base import Pipeline
from backend.pipelines.selection import PipelineSelector


@dataclass(frozen=True)
class ReviewScorer:
    """mode: "errors", "mirror" or "confidence"."""

    mode: str = "errors"

    def run(self, selector: PipelineSelector, pipeline: Pipeline, images: list[np.ndarray], ontology: Ontology,
            params: PredictParams, priority: int) -> tuple[list[Detections], list[float]]:
        """(one `Detections` per uint8 (H, W, 3) image, one raw score in [0, 1] per image) from `pipeline`."""
        dets, scores, _ = self.run_views(selector, pipeline, images, ontology, params, priority)
        return dets, scores

    def run_views(self, selector: PipelineSelector, pipeline: Pipeline, images: list[np.ndarray], ontology: Ontology,
                  params: PredictParams, priority: int
                  ) -> tuple[list[Detections], list[float], list[Detections] | None]:
        """`run`, and the regions found on each image's mirror mapped back to the image (None in "confidence" mode:
        no mirror pass), what a project's learned region model reads (`backend.predictions.region_model`)."""
        if self.mode == "confidence":
            dets = selector.run(pipeline, images, ontology, params, priority)
            return dets, [scoring.confidence_score(d) for d in dets], None
        both = images + [scoring.mirror_image(image) for image in images]
        found = selector.run(pipeline, both, ontology, params, priority)
        dets, mirrored = found[:len(images)], found[len(images):]
        if self.mode == "mirror":
            scores = [scoring.review_score(d, m) for d, m in zip(dets, mirrored)]  # m: mirror pixels
        else:
            scores = [scoring.errors_review_score([d, scoring.unmirror(m)]) for d, m in zip(dets, mirrored)]
        return dets, scores, [scoring.unmirror(m, d.image_size.width) for d, m in zip(dets, mirrored)]


TIE_BREAK = 0.001  # share of the raw score in a calibrated one: keeps the raw order inside a calibration step


def calibrated_score(raw: float, calibration: ScoreCalibration | None, learned: float | None = None,
                     counted: float | None = None, mixed: float | None = None) -> float:
    """The score Label Studio stores, in [0, 1], 6 decimals: the raw score without a calibration; with one,
    (1 - TIE_BREAK) x P(accepted unchanged | x) + TIE_BREAK x x (the probability to within 0.001, and tasks on
    one flat step of the isotonic curve still sorted by x). x is the raw score; when the calibration holds a rate mix
    (`ScoreCalibration.rate_k`), the task's `mixed` score; else when it holds a count model
    (`ScoreCalibration.count_model`), the task's `counted` score; else when it holds a region model
    (`ScoreCalibration.region_model`), the task's `learned` score. A task the models could not score (None) reads the
    raw score's own curve (`ScoreCalibration.raw`), or stays raw without one."""
    raw = min(max(float(raw), 0.0), 1.0)
    if calibration is not None and calibration.reads_model:
        read = (mixed if calibration.rate_k is not None else counted if calibration.count_model is not None
                else learned)
        if read is None:
            return calibrated_score(raw, calibration.raw)
        raw = min(max(float(read), 0.0), 1.0)
    if calibration is None:
        return round(raw, 6)
    return round((1 - TIE_BREAK) * float(calibration.apply(raw)) + TIE_BREAK * raw, 6)
