"""Fine-tune a project classifier from the project's image-level labels (`Choices`), read from the
Label Studio API: frozen EfficientNet-Lite0 features, a linear head, a stable train/held-out split.

Usage: python -m backend.training.classifier --project 3 [--control category] [--out DIR]
(LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY and MODEL_DIR from the environment). Then serve it with
CLASSIFIER_MODEL=<DIR> (default DIR: $MODEL_DIR/classifiers/project-<id>).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from backend.core.cancel import NEVER, StopFlag
from backend.core.errors import NotEnoughData
from backend.labelstudio.client import LabelStudioConnection
from backend.labelstudio.images import ImageFetcher
from backend.models.classifier import FrozenBackboneClassifier, load_head, save_project_classifier
from backend.models.imagenet import IMAGENET_MEAN, IMAGENET_STD, imagenet_backbone
from backend.labelstudio.api import export_tasks
from backend.training.dataset import chosen_annotation, evaluation_split, load_images

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Example:
    task_id: int
    url: str
    label: str


def choices_examples(tasks: list[dict], image_key: str, control: str | None = None) -> list[Example]:
    """Exported tasks → one (task, image URL, label) per task whose chosen annotation has a single choice."""
    out = []
    for task in tasks:
        annotation = chosen_annotation(task)
        if annotation is None:
            continue
        for region in annotation.get("result") or []:
            if region.get("type") != "choices" or (control and region.get("from_name") != control):
                continue
            choices = (region.get("value") or {}).get("choices") or []
            url = (task.get("data") or {}).get(image_key)
            if len(choices) == 1 and url:
                out.append(Example(int(task["id"]), url, str(choices[0])))
                break
    return out


@torch.inference_mode()
def image_features(model: FrozenBackboneClassifier, images: list[np.ndarray], flip: bool = False) -> torch.Tensor:
    """uint8 (H, W, 3) images → float32 (N, F) pooled backbone features at 224 x 224 (optionally mirrored)."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    out = []
    for image in images:
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
        x = F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
        if flip:
            x = x.flip(-1)
        out.append(model.features((x - mean) / std))
    return torch.cat(out)


def fit_head(head: torch.nn.Linear, features: torch.Tensor, targets: torch.Tensor, steps: int = 300) -> float:
    """Full-batch logistic regression of the linear head (Adam, weight decay); returns the final loss."""
    optimiser = torch.optim.Adam(head.parameters(), lr=0.01, weight_decay=1e-4)
    loss = torch.tensor(0.0)
    for _ in range(steps):
        optimiser.zero_grad()
        loss = F.cross_entropy(head(features), targets)
        loss.backward()
        optimiser.step()
    return float(loss.detach())


def train_project_classifier(tasks: list[dict], fetcher: ImageFetcher, project_id: int,
                             out_dir: Path, image_key: str = "image", control: str | None = None,
                             seed: int = 0, baseline: Path | None = None, stop: StopFlag = NEVER) -> dict:
    """The project's Choices annotations (exported `tasks`, see `export_tasks`) → train, evaluate on held-out
    tasks, save.

    With `baseline` (a directory holding an earlier `classifier.pt`), that classifier is scored on the very
    same evaluation tasks (`baseline_accuracy`), so versions are compared on equal data.
    """
    started = time.perf_counter()
    examples = choices_examples(tasks, image_key, control)
    class_names = sorted({e.label for e in examples})
    if len(class_names) < 2:
        raise NotEnoughData(f"project {project_id} needs image-level labels (Choices) of at least 2 classes; "
                         f"found {class_names}")
    images = load_images(fetcher, examples, stop)
    torch.manual_seed(seed)
    model = FrozenBackboneClassifier(imagenet_backbone(), len(class_names))
    train, evaluate, evaluated_on = evaluation_split([e.task_id for e in examples])
    targets = torch.tensor([class_names.index(e.label) for e in examples])
    train_images = [images[i] for i in train]
    features = torch.cat([image_features(model, train_images), image_features(model, train_images, flip=True)])
    loss = fit_head(model.head, features, torch.cat([targets[train], targets[train]]))
    with torch.inference_mode():
        predicted = model.head(image_features(model, [images[i] for i in evaluate])).argmax(dim=1)
    accuracy = float((predicted == targets[evaluate]).float().mean())
    baseline_accuracy = _baseline_accuracy(baseline, model, [images[i] for i in evaluate],
                                           [class_names[int(t)] for t in targets[evaluate]])
    metrics = {"accuracy": round(accuracy, 4), "evaluated_on": evaluated_on,
               "n_train": len(train), "n_eval": len(evaluate), "loss": round(loss, 4),
               "classes": class_names, "train_s": round(time.perf_counter() - started, 2),
               "baseline_accuracy": baseline_accuracy}
    save_project_classifier(out_dir, model.head, class_names, metrics)
    log.info("project %s classifier saved to %s: %s", project_id, out_dir, metrics)
    return metrics


def _baseline_accuracy(baseline: Path | None, model: FrozenBackboneClassifier, images: list[np.ndarray],
                       labels: list[str]) -> float | None:
    """Accuracy of the classifier saved in `baseline` on the given images (None without a baseline)."""
    if baseline is None or not (Path(baseline) / "classifier.pt").is_file():
        return None
    head, names, _ = load_head(Path(baseline))
    with torch.inference_mode():
        predicted = head(image_features(model, images)).argmax(dim=1).tolist()
    return round(float(np.mean([names[p] == label for p, label in zip(predicted, labels)])), 4)


def main() -> None:
    from backend.core.settings import Settings
    from backend.labelstudio.images import build_image_fetcher

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=int, required=True)
    parser.add_argument("--image-key", default="image")
    parser.add_argument("--control", default=None, help="Choices control name (default: any)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level)
    connection = LabelStudioConnection(settings.label_studio_url, settings.label_studio_api_key)
    fetcher = build_image_fetcher(settings, connection, cache_bytes=0)
    out = args.out or settings.layout.classifier_output(args.project)
    tasks = export_tasks(connection, args.project)
    print(json.dumps(train_project_classifier(tasks, fetcher, args.project, out, args.image_key, args.control)))


if __name__ == "__main__":
    main()
