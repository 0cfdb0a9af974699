"""Where everything lives under `MODEL_DIR`: the one home of its layout (every module asks `ModelDir` for a path).

```
MODEL_DIR/
  backend.sqlite                    state file: projects, webhook events, jobs and parts, raw review scores
  webhook_secret                    generated when basic auth is on (`backend.store.instance`)
  cache/images/                     bounded download cache of task images (`IMAGE_CACHE_MB`)
  cache/videos/                     videos streamed for one task, removed after it
  cache/onnx/                       the classifier exported to ONNX for CPU serving
  classifiers/project-<id>/         `python -m backend.training.classifier`'s default output
  projects/<id>/
    calibration.json                review-score calibration (`backend.jobs.calibration`)
    clusters.npz                    image clusters (`backend.predictions.clusters`)
    review.json, review.html        the cached review report and page (`backend.jobs.review`)
    <kind>/active.json              the active trained version of a kind (detector, classifier)
    <kind>/versions/<name>/         trained versions (`backend.registry.versions`); .staging-* while training
```
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelDir:
    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / "backend.sqlite"

    def secret(self, name: str) -> Path:
        return self.root / name

    @property
    def image_cache(self) -> Path:
        return self.root / "cache" / "images"

    @property
    def video_cache(self) -> Path:
        return self.root / "cache" / "videos"

    @property
    def onnx_cache(self) -> Path:
        return self.root / "cache" / "onnx"

    def classifier_output(self, project_id: int) -> Path:
        return self.root / "classifiers" / f"project-{int(project_id)}"

    def project(self, project_id: int) -> Path:
        return self.root / "projects" / str(int(project_id))

    def calibration(self, project_id: int) -> Path:
        return self.project(project_id) / "calibration.json"

    def clusters(self, project_id: int) -> Path:
        return self.project(project_id) / "clusters.npz"

    def review_report(self, project_id: int) -> Path:
        return self.project(project_id) / "review.json"

    def review_page(self, project_id: int) -> Path:
        return self.project(project_id) / "review.html"

    def trained(self, project_id: int, kind: str) -> Path:
        """A project's trained models of one kind: `active.json` and `versions/`."""
        return self.project(project_id) / kind

    def staging_leftovers(self) -> list[Path]:
        """Staging directories of versions whose training never finished (a crash)."""
        return sorted(self.root.glob("projects/*/*/versions/.staging-*"))
