"""The pipelines a process can serve, by `PIPELINE` name: the single source of the names and of the `auto` order.

`auto` picks a project's trained detector when it has one, else the first of `AUTO_ORDER` whose models load;
`trained` serves trained detectors only (see `backend.pipelines.selection`).
"""

from __future__ import annotations

from typing import Callable

from backend.adapters.model_set import ModelSet
from backend.pipelines.base import Pipeline
from backend.pipelines.grounded import GroundedPipeline
from backend.pipelines.lime_boxes import LimeBoxesPipeline
from backend.pipelines.sam3 import Sam3Pipeline

PIPELINE_BUILDERS: dict[str, Callable[[ModelSet], Pipeline]] = {
    "grounded": lambda models: GroundedPipeline(models.detector, models.sam, models.classifier),
    "lime": lambda models: LimeBoxesPipeline(models.classifier),
    "sam3": lambda models: Sam3Pipeline(models.sam3, models.sam3_video),
}
AUTO_ORDER = ("sam3", "grounded", "lime")  # PIPELINE=auto without a trained detector: the first whose models load
PIPELINE_NAMES = ("auto", *PIPELINE_BUILDERS, "trained")  # what PIPELINE and extra_params.pipeline may say


def check_pipeline_name(name: str, what: str = "PIPELINE") -> str:
    """`name` if it is a pipeline name, else `ValueError` naming `what` and the choices."""
    if name not in PIPELINE_NAMES:
        raise ValueError(f"{what} must be one of {PIPELINE_NAMES}, got {name!r}")
    return name


def build_pipelines(models: ModelSet) -> dict[str, Pipeline]:
    """One instance of every registered pipeline over the process's models (nothing is loaded here)."""
    return {name: build(models) for name, build in PIPELINE_BUILDERS.items()}
