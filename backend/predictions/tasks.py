"""Tasks → one Label Studio prediction each (or the reason a task could not be predicted).

Images download in parallel (`ImageFetcher.submit`); the pipeline runs on them in chunks of `chunk` images as
they arrive, so compute overlaps with the downloads still in flight; each chunk takes the device at the caller's
priority (`DeviceGate`). Regions are converted at the original image size; the prediction's `score` is the
review-priority score (`backend.predictions.priority`); with a project's `Clusters` and an embedding function, each
prediction also gets the `cluster` of its task's first image (`backend.predictions.clusters`). Video controls go
through `backend.predictions.video`.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from backend.core.detections import Detections
from backend.core.errors import TaskError
from backend.core.ontology import Control, Ontology
from backend.labelstudio.decode import LoadedImage
from backend.labelstudio.images import ImageFetcher
from backend.labelstudio.results import detections_to_results
from backend.pipelines.selection import PipelineSelector
from backend.predictions.score_calibration import ScoreCalibration
from backend.labelstudio.video_seeds import carried, seed_regions
from backend.predictions import scoring
from backend.predictions.clusters import Clusters
from backend.predictions.count_model import count_scores, misses
from backend.predictions.rate_mix import rate_scores
from backend.predictions.propagation import propagated_regions
from backend.predictions.request import PredictRequest
from backend.predictions.priority import ReviewScorer, calibrated_score
from backend.predictions.region_model import RegionModelError, of_labels, primary_control, served_regions, to_rows
from backend.predictions.video import video_regions

log = logging.getLogger(__name__)
CHUNK = 8  # images per pipeline call: the first ones are computed while later ones still download


@dataclass
class TaskPrediction:
    """What one task gets: `result` (Label Studio regions) and `score` (calibrated when the project has a
    calibration; `raw_score` before it), or `error` (why it has none); `cluster`: its kind of image (None without
    clusters); `mirror`: the regions found on its image's mirror as stored rows (`region_model.to_rows`; only for a
    task of one image scored on two views, else None); `embedding`: that image's float32 (D,) embedding when the
    predictor embeds images (else None)."""

    task_id: object
    result: list[dict] | None = None
    score: float | None = None
    error: str | None = None
    raw_score: float | None = None
    cluster: int | None = None
    mirror: list | None = None
    embedding: np.ndarray | None = None

    def as_label_studio(self, model_version: str) -> dict:
        """The entry of `/predict`'s `results` (and, with "task", of a bulk import)."""
        if self.error is not None:
            return {"task": self.task_id, "error": self.error, "model_version": model_version}
        return {"result": self.result, "score": self.score, "model_version": model_version}


def raw_scores(predictions: list[TaskPrediction]) -> dict[int, float]:
    """{task id: raw review score} of the predictions that have one (no error, an integer task id): what the
    project's score calibration is later fitted on (`backend.store.scores`, `backend.jobs.calibration`)."""
    return {int(p.task_id): p.raw_score for p in predictions if p.error is None and p.raw_score is not None
            and isinstance(p.task_id, int) and not isinstance(p.task_id, bool)}


def mirror_regions(predictions: list[TaskPrediction]) -> dict[int, list]:
    """{task id: mirror region rows} of the predictions in `raw_scores` that have them (stored beside the raw score:
    what the project's learned region model is fitted on)."""
    scored = raw_scores(predictions)
    return {int(p.task_id): p.mirror for p in predictions if p.mirror is not None and p.task_id in scored}


def image_embeddings(predictions: list[TaskPrediction]) -> dict[int, np.ndarray]:
    """{task id: image embedding} of the predictions in `mirror_regions` that have one (stored beside the raw score:
    what the project's count model is fitted on)."""
    mirrored = mirror_regions(predictions)
    return {int(p.task_id): p.embedding for p in predictions if p.embedding is not None and p.task_id in mirrored}


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


@dataclass
class _Found:
    """What one task has gathered from its controls: Label Studio regions, one review score per image or video, the
    cluster and embedding of its first image, or the reason it has no prediction; `views`: per image, its regions and
    its mirror's mapped back (None without a mirror pass), at the image's original size."""

    regions: list[dict] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    cluster: int | None = None
    error: str | None = None
    views: list[tuple[Detections, Detections | None]] = field(default_factory=list)
    embedding: np.ndarray | None = None

    def merged(self, other: "_Found") -> "_Found":
        """This task's findings followed by `other`'s (the first error, cluster and embedding win)."""
        return _Found(self.regions + other.regions, self.scores + other.scores,
                      self.cluster if self.cluster is not None else other.cluster, self.error or other.error,
                      self.views + other.views, self.embedding if self.embedding is not None else other.embedding)

    @property
    def two_views(self) -> tuple[Detections, Detections] | None:
        """(regions, mirror's regions) when the task is one image scored on two views (and nothing else), else None."""
        if len(self.scores) == 1 and len(self.views) == 1 and self.views[0][1] is not None:
            return self.views[0]
        return None


@dataclass
class Predictor:
    """What predicting tasks of one project needs: the process's pipeline selector and image fetcher, the project's
    review scorer and score calibration, where videos are streamed to, and the images per pipeline call; with
    `embed` (uint8 (H, W, 3) images → float32 (N, D) unit rows) each prediction of one image gets its embedding (what
    a calibration's count model reads, and is fitted on), and with `clusters` too its cluster;
    `deadline_s`: carrying annotators' video boxes stops this many seconds after the request started (`/predict`;
    None: no limit)."""

    selector: PipelineSelector
    fetcher: ImageFetcher
    scorer: ReviewScorer
    video_dir: Path
    calibration: ScoreCalibration | None = None
    chunk: int = CHUNK
    clusters: Clusters | None = None
    embed: Callable[[list[np.ndarray]], np.ndarray] | None = None
    deadline_s: float | None = None
    _prefetched: dict = field(default_factory=dict)  # (url, task id) → Future[LoadedImage] started by `prefetch`

    def predict(self, tasks: list[dict], task_ids: list, request: PredictRequest) -> list[TaskPrediction]:
        """One `TaskPrediction` per task, in order, all made by `request.pipeline`.

        tasks: Label Studio tasks (their `data`, and the `drafts` / `annotations` Label Studio sends); task_ids: the
        id to download cloud URLs with (None if unknown). Image controls go through the image path in chunks, video
        controls (`VideoRectangle`) one video at a time: a video task with boxes the annotator drew and left open
        (`seed_regions` from the task and `request.context`, `carried`) gets them carried through the next frames
        (`backend.predictions.propagation`; unless `carry_video_boxes` is off), one without gets the pipeline's
        tracks."""
        found = [_Found() for _ in tasks]
        images = request.ontology.with_controls(lambda c: not c.is_video)
        if images.controls:
            found = [f.merged(g) for f, g in zip(found, self._images(tasks, task_ids, request.restricted(images)))]
        deadline = time.monotonic() + self.deadline_s if self.deadline_s else None
        stop = (lambda: time.monotonic() > deadline) if deadline else None  # one deadline for the whole request
        for control in (c for c in request.ontology.controls if c.is_video):
            videos = self._videos(tasks, task_ids, control, request, stop, {i for i, f in enumerate(found) if f.error})
            found = [f.merged(g) for f, g in zip(found, videos)]
        return [TaskPrediction(task_ids[i], error=f.error) if f.error is not None else
                self._scored(task_ids[i], f, min(f.scores, default=1.0), request.ontology) for i, f in enumerate(found)]

    def prefetch(self, tasks: list[dict], task_ids: list, ontology: Ontology) -> None:
        """Start loading the images of tasks predicted next in the download pool (background jobs call it with the
        next chunk while the device works on the current one); `predict` takes the started loads over. Loads start
        in call order: prefetch the current chunk before the next one."""
        _, wanted = image_urls(tasks, ontology.with_controls(lambda c: not c.is_video))
        for i, _, url in wanted:
            key = (str(url), task_ids[i])
            if key not in self._prefetched:
                self._prefetched[key] = self.fetcher.submit(url, task_ids[i])

    def _scored(self, task_id, found: _Found, raw: float, ontology: Ontology) -> TaskPrediction:
        """A task's prediction; its raw score is the lowest of its images' and videos' review scores; the project's
        learned region model (in its calibration) scores a task of one image from its two views, reading the served
        regions as Label Studio will hold them (`region_model.served_regions`, as the fit read them)."""
        views = found.two_views
        read = self._read(found, views, ontology)
        learned = counted = mixed = None
        if read is not None:  # only the score the calibration's curve reads (`calibrated_score`)
            if self.calibration.rate_k is not None:
                mixed = self._mixed(*read, found.embedding)
            elif self.calibration.count_model is not None:
                counted = self._counted(*read, found.embedding)
            else:
                learned = self._learned(*read)
        return TaskPrediction(task_id, found.regions, calibrated_score(raw, self.calibration, learned, counted, mixed),
                              raw_score=round(raw, 6), cluster=found.cluster,
                              mirror=to_rows(views[1]) if views is not None else None,
                              embedding=found.embedding if views is not None else None)

    def _read(self, found: _Found, views, ontology: Ontology) -> tuple[Detections, Detections] | None:
        """(served regions, the mirror's of the same labels) of the primary control as the calibration's models read
        them, when it holds one and the task is one image on two views (else None; also when unreadable)."""
        control = primary_control(ontology)
        if self.calibration is None or not self.calibration.reads_model or views is None or control is None:
            return None
        try:
            return served_regions(found.regions, control, views[0].image_size), of_labels(views[1], control)
        except RegionModelError as exc:
            log.warning("learned review score skipped: %s", exc)
            return None

    def _learned(self, served: Detections, mirror: Detections) -> float | None:
        """The learned region model's score of the task (None without one)."""
        model = self.calibration.region_model
        return None if model is None else model.score(served, mirror)

    def _counted(self, served: Detections, mirror: Detections, embedding: np.ndarray | None) -> float | None:
        """The count model's score of the task: its expected corrections (the region model's when the calibration
        holds one, else the two views' agreement errors) plus the objects it expects beyond the shown regions
        (None without a count model or an embedding of its size)."""
        model = self.calibration.count_model
        if model is None or embedding is None or embedding.shape != model.coef.shape:
            return None
        return float(count_scores(np.array([self._expected(served, mirror)]), model.predict(embedding),
                                  np.array([len(served)]))[0])

    def _expected(self, served: Detections, mirror: Detections) -> float:
        """The task's expected corrections: the region model's when the calibration holds one, else the two views'
        agreement errors."""
        region_model = self.calibration.region_model
        return (region_model.expected_errors(served, mirror) if region_model is not None
                else scoring.agreement_errors([served, mirror]))

    def _mixed(self, served: Detections, mirror: Detections, embedding: np.ndarray | None) -> float | None:
        """The rate mix's score of the task (`backend.predictions.rate_mix`): its expected corrections plus, with a
        count model, the objects it expects beyond the shown regions, over its units (and those misses) and over k
        (None without a mix, or with a count model but no embedding of its size)."""
        k = self.calibration.rate_k
        if k is None:
            return None
        model = self.calibration.count_model
        missed = 0.0
        if model is not None:
            if embedding is None or embedding.shape != model.coef.shape:
                return None
            missed = float(misses(model.predict(embedding), np.array([len(served)]))[0])
        expected = self._expected(served, mirror) + missed
        units = scoring.agreement_units([served, mirror]) + missed
        return float(rate_scores(np.array([expected]), np.array([units]), k)[0])

    def _images(self, tasks: list[dict], task_ids: list, request: PredictRequest) -> list[_Found]:
        """Each task's findings from its images (`request.ontology` holds the image controls)."""
        found = [_Found() for _ in tasks]
        errors, wanted = image_urls(tasks, request.ontology)
        images = [_Image(i, key, self._prefetched.pop((str(url), task_ids[i]), None)
                         or self.fetcher.submit(url, task_ids[i])) for i, key, url in wanted]
        computed, errors = self._compute(images, errors, request)
        for i, dets, score, cluster, mirror, embedding in computed:
            image = images[i]
            task = found[image.task_index]
            if task.embedding is None:
                task.embedding = embedding
            task.regions.extend(detections_to_results(dets, request.ontology.controls_for(image.image_key),
                                                      request.params.polygon_tolerance))
            task.scores.append(score)
            task.views.append((dets, mirror))
            if task.cluster is None:
                task.cluster = cluster
        for i, error in errors.items():
            found[i] = _Found(error=error)
        return found

    def _compute(self, images: list[_Image], known: dict[int, str], request: PredictRequest
                 ) -> tuple[list[tuple[int, Detections, float, int | None, Detections | None, np.ndarray | None]],
                            dict[int, str]]:
        """([(index into images, Detections in original pixels, review score, cluster or None, the mirror's regions
        mapped back in original pixels or None, float32 (D,) embedding or None)] in image order for
        the images of tasks without an error, {task index: error}: `known` and the download failures), `chunk`
        images per pipeline call as their downloads finish."""
        errors = dict(known)
        ready: list[tuple[int, LoadedImage]] = []
        computed = []
        position = {image.future: i for i, image in enumerate(images)}
        for done, future in enumerate(as_completed(position), start=1):
            try:
                ready.append((position[future], future.result()))
            except TaskError as exc:
                errors.setdefault(images[position[future]].task_index, exc.message)
            if ready and (len(ready) >= self.chunk or done == len(images)):
                ready = [(i, image) for i, image in ready if images[i].task_index not in errors]
                if ready:
                    pixels = [image.pixels for _, image in ready]
                    dets, scores, mirrors = self.scorer.run_views(self.selector, request.pipeline, pixels,
                                                                  request.ontology, request.params, request.priority)
                    vectors = self._embedded(pixels, request.priority)
                    clusters = self._clusters(vectors, len(pixels))
                    mirrors = mirrors or [None] * len(dets)
                    vectors = list(vectors) if vectors is not None else [None] * len(dets)
                    computed.extend((i, d.resized_to(image.original_size), s, c,
                                     m if m is None else m.resized_to(image.original_size), v)
                                    for (i, image), d, s, c, m, v in zip(ready, dets, scores, clusters, mirrors,
                                                                         vectors))
                ready = []
        computed.sort(key=lambda item: item[0])
        return [item for item in computed if images[item[0]].task_index not in errors], errors

    def _embedded(self, pixels: list[np.ndarray], priority: int) -> np.ndarray | None:
        """float32 (N, D) embeddings of the images (on the device at `priority`), or None without `embed` or when
        embedding failed."""
        if self.embed is None:
            return None
        try:
            with self.selector.gate.hold(priority):
                return np.asarray(self.embed(pixels), np.float32)
        except Exception as exc:  # noqa: BLE001 - clusters and the count score order the work; never cost a prediction
            log.warning("images not embedded (no clusters, no count score): %s", exc)
            return None

    def _clusters(self, vectors: np.ndarray | None, n: int) -> list[int | None]:
        """The cluster of each image (its embedding's nearest centroid), or Nones."""
        if self.clusters is None or vectors is None:
            return [None] * n
        return [int(c) for c in self.clusters.assign(vectors)]

    def _videos(self, tasks: list[dict], task_ids: list, control: Control, request: PredictRequest,
                stop: Callable[[], bool] | None, failed: set[int]) -> list[_Found]:
        """Each task's findings from its video under `control` (tasks in `failed` are skipped)."""
        found = [_Found() for _ in tasks]
        frames = request.restricted(request.ontology.with_controls(lambda c: c is control))
        params = request.params
        for i, task in enumerate(tasks):
            if i in failed:
                continue
            if not isinstance(task.get("data"), dict) or not task["data"].get(control.image_key):
                found[i].error = f"task has no video under data.{control.image_key}"
                continue
            seeds = seed_regions(task, request.context, control) if params.carry_video_boxes else []
            try:
                if any(carried(r) for r in seeds):
                    regions, score = propagated_regions(task, task_ids[i], control, seeds, params,
                                                        self.selector.carrier, self.fetcher, self.video_dir,
                                                        request.priority, stop)
                else:
                    regions, score = video_regions(task, task_ids[i], control, frames, self.selector, self.fetcher,
                                                   self.video_dir)
            except TaskError as exc:
                found[i].error = exc.message
                continue
            found[i] = _Found([*regions], [score])
        return found
