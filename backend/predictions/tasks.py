"""Tasks → one Label Studio prediction each (or the reason a task could not be predicted).

Images download in parallel (`ImageFetcher.submit`); the pipeline runs on them in chunks of `chunk` images as
they arrive, so compute overlaps with the downloads still in flight; each chunk takes the device at the caller's
priority (`DeviceGate`). Regions are converted at the original image size; the prediction's `score` is the
review-priority score (`backend.predictions.review`).
"""

from __future__ import annotations

from concurrent.futures import Future, as_completed
from dataclasses import dataclass

from backend.core.detections import Detections
from backend.core.device import PREDICT
from backend.core.errors import TaskError
from backend.core.ontology import Ontology
from backend.core.params import PredictParams
from backend.labelstudio.decode import LoadedImage
from backend.labelstudio.images import ImageFetcher
from backend.labelstudio.results import detections_to_results
from backend.pipelines.base import Pipeline
from backend.pipelines.selection import PipelineSelector
from backend.predictions.review import ReviewScorer

CHUNK = 8  # images per pipeline call: the first ones are computed while later ones still download


@dataclass
class TaskPrediction:
    """What one task gets: `result` (Label Studio regions) and `score`, or `error` (why it has none)."""

    task_id: object
    result: list[dict] | None = None
    score: float | None = None
    error: str | None = None

    def as_label_studio(self, model_version: str) -> dict:
        """The entry of `/predict`'s `results` (and, with "task", of a bulk import)."""
        if self.error is not None:
            return {"task": self.task_id, "error": self.error, "model_version": model_version}
        return {"result": self.result, "score": self.score, "model_version": model_version}


@dataclass
class _Image:
    task_index: int
    image_key: str
    future: Future


def image_urls(tasks: list[dict], ontology: Ontology) -> tuple[dict[int, str], list[tuple[int, str, object]]]:
    """({task index: error} for tasks without usable data, [(task index, image key, url)] to download)."""
    errors: dict[int, str] = {}
    wanted: list[tuple[int, str, object]] = []
    for i, task in enumerate(tasks):
        data = task.get("data")
        if not isinstance(data, dict):
            errors[i] = "task has no 'data' object"
            continue
        for key in ontology.image_keys:
            url = data.get(key)
            if not url:
                errors[i] = f"task has no image under data.{key} (the label config's <Image value=\"${key}\">)"
                break
            wanted.append((i, key, url))
    return errors, wanted


def predict_tasks(tasks: list[dict], task_ids: list, ontology: Ontology, params: PredictParams,
                  selector: PipelineSelector, pipeline: Pipeline, fetcher: ImageFetcher, scorer: ReviewScorer,
                  priority: int = PREDICT, chunk: int = CHUNK) -> tuple[Pipeline, list[TaskPrediction]]:
    """One `TaskPrediction` per task, in order, and the pipeline that ran (auto mode may hand over).

    tasks: Label Studio tasks (their `data`); task_ids: the id to download cloud URLs with (None if unknown)."""
    errors, wanted = image_urls(tasks, ontology)
    images = [_Image(i, key, fetcher.submit(url, task_ids[i])) for i, key, url in wanted]
    pipeline, computed = _compute(selector, pipeline, images, errors, ontology, params, scorer, priority, chunk)
    regions: dict[int, list[dict]] = {}
    scores: dict[int, list[float]] = {}
    for i, dets, score in computed:
        image = images[i]
        if image.task_index in errors:
            continue
        regions.setdefault(image.task_index, []).extend(
            detections_to_results(dets, ontology.controls_for(image.image_key), params.polygon_tolerance))
        scores.setdefault(image.task_index, []).append(score)
    out = []
    for i in range(len(tasks)):
        if i in errors:
            out.append(TaskPrediction(task_ids[i], error=errors[i]))
        else:
            out.append(TaskPrediction(task_ids[i], regions.get(i, []), round(min(scores.get(i, [1.0])), 4)))
    return pipeline, out


def _compute(selector: PipelineSelector, pipeline: Pipeline, images: list[_Image], errors: dict[int, str],
             ontology: Ontology, params: PredictParams, scorer: ReviewScorer, priority: int,
             chunk: int) -> tuple[Pipeline, list[tuple[int, Detections, float]]]:
    """(pipeline that ran, [(index into images, Detections in original pixels, review score)] in image order);
    download failures are added to `errors`."""
    ready: list[tuple[int, LoadedImage]] = []
    computed: list[tuple[int, Detections, float]] = []
    position = {image.future: i for i, image in enumerate(images)}
    for done, future in enumerate(as_completed(position), start=1):
        try:
            ready.append((position[future], future.result()))
        except TaskError as exc:
            errors.setdefault(images[position[future]].task_index, exc.message)
        if ready and (len(ready) >= chunk or done == len(images)):
            ready = [(i, image) for i, image in ready if images[i].task_index not in errors]
            if ready:
                pixels = [image.pixels for _, image in ready]
                pipeline, dets, scores = scorer.run(selector, pipeline, pixels, ontology, params, priority)
                computed.extend((i, d.resized_to(image.original_size), s)
                                for (i, image), d, s in zip(ready, dets, scores))
            ready = []
    computed.sort(key=lambda item: item[0])
    return pipeline, computed
