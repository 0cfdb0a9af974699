"""Training data from the Label Studio API (never from webhook bodies): which annotation counts for a task,
the stable train/held-out split, and box examples from rectangle, brush and polygon regions.

Boxes are float32 (N, 4) xyxy pixels of the EXIF-corrected image as Label Studio shows it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from backend.core.cancel import NEVER, StopFlag
from backend.core.errors import BadRequest
from backend.core.sizes import Size
from backend.core.ontology import BOX_CONTROLS, Control
from backend.labelstudio.images import ImageFetcher
from backend.labelstudio.results import results_to_detections



@dataclass(frozen=True)
class LabeledImage:
    """One image (or video frame) to train a detector on: uint8 (H, W, 3) pixels, float32 (N, 4) xyxy pixel boxes
    of that image, N label values; `task_id` keeps frames of one video on one side of the held-out split."""

    task_id: int
    image: np.ndarray
    boxes: np.ndarray
    labels: tuple[str, ...]


def image_examples(tasks: list[dict], controls: list[Control], fetcher: ImageFetcher,
                   stop: StopFlag = NEVER) -> list[LabeledImage]:
    """The annotated images of exported tasks (`box_examples`), downloaded at working size, boxes rescaled to it."""
    examples = box_examples(tasks, controls)
    images = load_images(fetcher, examples, stop)
    return [LabeledImage(e.task_id, image, e.boxes_for(image.shape[1], image.shape[0]), e.labels)
            for e, image in zip(examples, images)]


def load_images(fetcher: ImageFetcher, examples, stop: StopFlag = NEVER) -> list[np.ndarray]:
    """uint8 (h, w, 3) working-size images of examples with `.url` and `.task_id`, in order; `stop` is checked
    before each download."""
    images = []
    for example in examples:
        stop.check()
        images.append(fetcher.load(example.url, example.task_id).pixels)
    return images


def chosen_annotation(task: dict) -> dict | None:
    """The annotation that counts for a task: not cancelled, ground truth first, then the latest."""
    candidates = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    candidates.sort(key=lambda a: (bool(a.get("ground_truth")), a.get("updated_at") or ""), reverse=True)
    return candidates[0] if candidates else None


def is_held_out(task_id: int, fraction: float = 0.2) -> bool:
    """Stable split: a task's side depends on its id alone, so it never moves as the project grows."""
    digest = hashlib.sha256(f"task-{task_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


MIN_FOR_HOLD_OUT = 10  # with fewer annotated tasks a model is evaluated on its training tasks


def evaluation_split(task_ids: list[int]) -> tuple[list[int], list[int], str]:
    """(train indices, evaluation indices, "held-out" or "training") for examples of these tasks: the held-out
    tasks when both sides are non-empty and there are at least `MIN_FOR_HOLD_OUT`, else all of them on both
    sides (the model is then evaluated on its training data, and the metrics say so)."""
    held = [is_held_out(task_id) for task_id in task_ids]
    train = [i for i, h in enumerate(held) if not h]
    evaluation = [i for i, h in enumerate(held) if h]
    if len(task_ids) < MIN_FOR_HOLD_OUT or not train or not evaluation:
        everything = list(range(len(task_ids)))
        return everything, everything, "training"
    return train, evaluation, "held-out"


@dataclass(frozen=True)
class BoxExample:
    """One annotated image: boxes in the pixels of the annotator's view (`image_size` = (width, height)),
    labels are Label Studio label values. A task with an annotation but no region is a valid negative."""

    task_id: int
    url: str
    boxes: np.ndarray
    labels: tuple[str, ...]
    image_size: Size | None

    def boxes_for(self, width: int, height: int) -> np.ndarray:
        """Boxes rescaled to a loaded image of `width` x `height` (the export's sizes may differ)."""
        if self.image_size is None or self.image_size == (width, height):
            return self.boxes
        sx, sy = width / self.image_size[0], height / self.image_size[1]
        return self.boxes * np.array([sx, sy, sx, sy], np.float32)


def box_examples(tasks: list[dict], controls: list[Control]) -> list[BoxExample]:
    """Exported tasks → one `BoxExample` per task whose chosen annotation is usable for these controls.

    Rectangles give their box; brush and polygon regions the box around their mask. Regions of other
    controls, with labels the config no longer has, or narrower than a pixel are skipped. A malformed region raises
    `BadRequest` naming the task and annotation.
    """
    names = {c.name for c in controls if c.tag in BOX_CONTROLS}
    known = {label for c in controls if c.name in names for label in c.labels}
    image_keys = {c.image_key for c in controls if c.name in names}
    out = []
    for task in tasks:
        annotation = chosen_annotation(task)
        url = next(((task.get("data") or {}).get(k) for k in image_keys if (task.get("data") or {}).get(k)), None)
        if annotation is None or not url:
            continue
        regions = [r for r in annotation.get("result") or [] if isinstance(r, dict) and r.get("from_name") in names]
        try:
            dets = results_to_detections(regions)
        except ValueError as exc:
            raise BadRequest(f"task {task.get('id')}, annotation {annotation.get('id')}: {exc}") from None
        if not np.isfinite(dets.xyxy).all():
            raise BadRequest(f"task {task.get('id')}, annotation {annotation.get('id')}: a region has "
                             "non-finite coordinates")
        sides = dets.xyxy[:, 2:] - dets.xyxy[:, :2]
        keep = [i for i, label in enumerate(dets.labels) if label in known and (sides[i] >= 1).all()]
        dets = dets.select(keep)
        size = dets.image_size if dets.image_size != (0, 0) else None
        out.append(BoxExample(int(task["id"]), url, dets.xyxy, dets.labels, size))
    return out
