"""The model registry: `MODEL_DIR/projects/<id>/<kind>/versions/vNNNN/` plus `active.json`, and the one home of the
`model_version` format of trained versions ("project3-detector-v0002": `version_name`, `trained_versions`).

A version is written in a staging directory and renamed into place in one step, so a crash never leaves
a partial version; `active.json` is replaced atomically. Staging leftovers are removed at start-up.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from backend.core.layout import ModelDir
from backend.core.files import write_atomic

DETECTOR = "detector"
CLASSIFIER = "classifier"
TRAINED_KINDS = (DETECTOR, CLASSIFIER)  # what a project's trained versions can be
_TRAINED_VERSION = re.compile(r"project([0-9]{1,19})-(detector|classifier)-(v[0-9]{4,9})")


def version_name(project_id: int, kind: str, name: str) -> str:
    """The `model_version` predictions of a trained version carry, e.g. "project3-detector-v0002"."""
    return f"project{int(project_id)}-{kind}-{name}"


def untrained_version(project_id: int | None) -> str:
    """The `model_version` `/setup` answers before a project's first detector is trained (`PIPELINE=trained`)."""
    return f"project{project_id}-detector-untrained"


def trained_versions(model_version: str, project_id: int) -> list[tuple[str, str]]:
    """[(kind, name)] of `project_id`'s trained versions a `model_version` names (a version with a zero-shot
    fallback names one; a zero-shot pipeline's none), e.g. "project3-detector-v0002" → [("detector", "v0002")]."""
    return [(m.group(2), m.group(3)) for m in _TRAINED_VERSION.finditer(model_version)
            if int(m.group(1)) == int(project_id)]


# where a detector version takes each label's regions from (its metrics' "sources": label → one of these)
DETECTOR_SOURCE = "detector"
ZERO_SHOT_SOURCE = "zero-shot"


@dataclass(frozen=True)
class Version:
    project_id: int
    kind: str
    name: str
    path: Path
    metrics: dict

    @property
    def model_version(self) -> str:
        """The `model_version` string predictions carry, e.g. "project3-detector-v0002"."""
        return version_name(self.project_id, self.kind, self.name)

    @property
    def zero_shot_labels(self) -> tuple[str, ...]:
        """Labels the version knows but leaves to the zero-shot pipeline, which did better on them (its metrics'
        "sources"; versions trained before per-label sources have none)."""
        return tuple(label for label, source in (self.metrics.get("sources") or {}).items()
                     if source == ZERO_SHOT_SOURCE)

    def source_evidence(self) -> dict[str, str]:
        """Label → why its source was chosen, e.g. "held-out correction time 41 s vs 63 s zero-shot (drawing all:
        70 s), AP50 0.62 vs 0.31" (labels with a recorded comparison only)."""
        zero_shot = self.metrics.get("zero_shot") or {}
        effort = (self.metrics.get("effort") or {}).get("per_class") or {}
        out = {}
        for label in self.metrics.get("sources") or {}:
            mine = ((self.metrics.get("served_per_class") or self.metrics.get("per_class") or {}).get(label)
                    or {}).get("ap50")
            theirs = ((zero_shot.get("per_class") or {}).get(label) or {}).get("ap50")
            if mine is None or self.metrics.get("evaluated_held_out") is False:
                out[label] = "no held-out comparison yet (no held-out box of it, or too few annotated tasks)"
                continue
            other = f"{theirs:.2f}" if theirs is not None and label in zero_shot.get("covers", ()) else "none"
            why = f"held-out AP50 {mine:.2f} vs {other} zero-shot"
            if label in effort:
                e = effort[label]
                why = (f"held-out correction time {e['detector_s']:.0f} s vs {e['zero_shot_s']:.0f} s zero-shot "
                       f"(drawing all: {e['manual_s']:.0f} s), AP50 {mine:.2f} vs {other}")
            out[label] = why
        return out


class Registry:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.layout = ModelDir(self.root)
        self._lock = threading.Lock()

    def _kind_dir(self, project_id: int, kind: str) -> Path:
        return self.layout.trained(project_id, kind)

    def clean_staging(self) -> int:
        """Remove staging directories left by a crashed job; returns how many."""
        removed = 0
        for staging in self.layout.staging_leftovers():
            shutil.rmtree(staging, ignore_errors=True)
            removed += 1
        return removed

    def staging_dir(self, project_id: int, kind: str) -> Path:
        versions = self._kind_dir(project_id, kind) / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".staging-", dir=versions))

    @contextmanager
    def staging(self, project_id: int, kind: str) -> Iterator[Path]:
        """A fresh staging directory for a version being trained; removed if the block raises (a committed
        one has been renamed away already)."""
        staging = self.staging_dir(project_id, kind)
        try:
            yield staging
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def commit(self, staging: Path, project_id: int, kind: str, metrics: dict) -> Version:
        """Write metrics.json into `staging` and rename it to the next version name."""
        (staging / "metrics.json").write_text(json.dumps({**metrics, "created_at": time.time()}, indent=2))
        versions = self._kind_dir(project_id, kind) / "versions"
        with self._lock:
            numbers = [int(p.name[1:]) for p in versions.glob("v[0-9]*") if p.name[1:].isdigit()]
            name = f"v{max(numbers, default=0) + 1:04d}"
            os.rename(staging, versions / name)
        return self.version(project_id, kind, name)

    def version(self, project_id: int, kind: str, name: str) -> Version:
        path = self._kind_dir(project_id, kind) / "versions" / name
        if not (path / "metrics.json").is_file():
            raise KeyError(f"project {project_id} has no {kind} version {name!r}")
        return Version(int(project_id), kind, name, path, json.loads((path / "metrics.json").read_text()))

    def versions(self, project_id: int, kind: str) -> list[Version]:
        versions = self._kind_dir(project_id, kind) / "versions"
        names = sorted(p.name for p in versions.glob("v[0-9]*")) if versions.is_dir() else []
        return [self.version(project_id, kind, name) for name in names]

    def active(self, project_id: int, kind: str) -> Version | None:
        pointer = self._kind_dir(project_id, kind) / "active.json"
        try:
            return self.version(project_id, kind, json.loads(pointer.read_text())["version"])
        except (OSError, ValueError, KeyError):  # none, or a version removed meanwhile: nothing active
            return None

    def prune(self, project_id: int, kind: str, keep: int) -> list[str]:
        """Remove all but the active version and the newest `keep` (a version that beat nothing is 35 MB of disk);
        returns the names removed."""
        removed = []
        with self._lock:
            names = [v.name for v in self.versions(project_id, kind)]
            for name in names[:-keep] if keep > 0 else []:
                active = self.active(project_id, kind)  # read again before each removal: it may have moved
                if active is not None and active.name == name:
                    continue
                shutil.rmtree(self._kind_dir(project_id, kind) / "versions" / name, ignore_errors=True)
                removed.append(name)
        return removed

    def activate(self, project_id: int, kind: str, name: str) -> Version:
        """Make `name` the served version (also the rollback call); raises KeyError for unknown versions."""
        with self._lock:
            version = self.version(project_id, kind, name)
            write_atomic(self._kind_dir(project_id, kind) / "active.json",
                         json.dumps({"version": name, "activated_at": time.time()}))
        return version
