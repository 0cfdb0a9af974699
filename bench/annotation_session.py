"""The loop as annotators feel it: simulated annotators label a project in a real Label Studio with this backend
connected as `make serve` runs it, and the benchmark adds up what their corrections would cost.

Per domain (DeepForest tree tiles; photo composites of cats, cups and motorcycles, `bench/routing_photos.py`) a
project is created, its images imported and the backend connected (Settings → Model; Connect pre-labels every
task and sets Uncertainty sampling). Then, task after task, the annotator asks Label Studio for the next task
("Label All Tasks": `GET /api/projects/{id}/next`, the project's sampling), sees the pre-label Label Studio shows at
that moment (the predictions of the project's model version), corrects it to the ground truth and submits it
through the API, so webhooks, training, activation and re-prediction of unlabelled tasks all run for real.
`--pace-s` is the wall-clock seconds between two submitted tasks: the annotation team's throughput (e.g. four
annotators taking 40 s per task submit one every 10 s), i.e. the time the backend has, per corrected task, to
learn from it. The domains run one after the other on one backend; a finished domain's project is disconnected and
its unfinished jobs cancelled before the next one starts, so each has the backend to itself, as in a run of it alone
(before 2026-12-06 the first project's trainings went on during the second domain's).

Costs (`backend/core/effort.py`, with its sources; the same model chooses what the backend serves): every
pre-labelled region is verified, then accepted, relabelled, adjusted or deleted; every missed box is drawn. Three
conditions on the very same tasks in the very same order: no pre-labels (draw everything), zero-shot pre-labels only
(the predictions Connect made, never retrained), and the full loop (what the annotator was shown). Reported under a
fast-drawing model (extreme clicking, 7 s per box: the conservative one, the main figures) and a traditional one
(25.5 s per box).

Usage: python bench/annotation_session.py [--domains trees photos] [--tasks 150] [--pace-s 8] [--extra JSON]
       [--annotator-draw-s S] [--quick]
Ends with one JSON line: per domain (under "domains") saving_pct, saving_second_half_pct, zero_shot_saving_pct,
worst_window_vs_zero_shot, activations, first_activation_task, tasks, pace_s, version_lag_tasks (per activated
version: tasks submitted between its activation and the first task showing it; null: never shown),
mean_version_lag_tasks (and the same under "traditional"), review_order (what the project's last calibration refit
chose: reviewed tasks, region_model "learned" / "default", count_model "count" / "default"; null before any),
drawing_time (the seconds per box the review page measures from the lead times Label Studio stored, with its 95 %
interval, beside the project's train_draw_seconds: `backend.review.drawing`);
over domains min_saving_pct, min_saving_second_half_pct, min_worst_window_vs_zero_shot.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests
from label_studio_sdk.client import LabelStudio
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from backend.jobs.calibration import calibration_summary  # noqa: E402
from backend.labelstudio.api import export_for_review  # noqa: E402
from backend.labelstudio.client import LabelStudioConnection  # noqa: E402
from backend.labelstudio.config import parse_label_config  # noqa: E402
from backend.review.drawing import drawing_time  # noqa: E402
from backend.review.export import read_export  # noqa: E402
from backend.core.effort import FAST, MODELS, actions, drawing_model, manual_seconds, seconds  # noqa: E402
from tests.e2e.servers import BackendServer, LabelStudioServer, label_studio_binary  # noqa: E402

WINDOW = 25  # tasks per window of the never-worse check


@dataclass(frozen=True)
class Item:
    """One task: PNG bytes; float32 (N, 4) xyxy pixel boxes with their label values."""

    name: str
    png: bytes
    width: int
    height: int
    boxes: np.ndarray
    labels: tuple[str, ...]

    def percent_boxes(self) -> np.ndarray:
        return self.boxes * np.array([100 / self.width, 100 / self.height] * 2, np.float32)


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def tree_items(count: int, seed: int, tile: int = 160) -> list[Item]:
    """`count` DeepForest tiles of `tile` px with at least one tree crown (labels "tree"), in a seeded random order."""
    from retrain import sample_data, tiles  # the DeepForest wheel's sample data, cut as the retraining bench cuts it
    Image.MAX_IMAGE_PIXELS = None
    items = [Item(f"tree-{tile_id.replace('@', '-').replace(',', '-')}.png", _png(image), tile, tile,
                  boxes.astype(np.float32), ("tree",) * len(boxes))
             for tile_id, image, boxes in tiles(sample_data(ROOT / "bench" / ".cache" / "deepforest-data"), tile)]
    order = np.random.default_rng(seed).permutation(len(items))
    return [items[i] for i in order[:count]]


def photo_items(count: int, seed: int) -> list[Item]:
    """`count` composites of cats, cups and motorcycles on varied backgrounds (`bench/routing_photos.py`)."""
    from routing_photos import photo_set
    photos = photo_set(n_composites=count, seed=seed)[3:]  # composites only: the three single photos repeat
    return [Item(f"photo-{i}.png", _png(p.image), p.image.shape[1], p.image.shape[0], p.boxes, p.labels)
            for i, p in enumerate(photos)]


DOMAINS = {"trees": (tree_items, ("tree",)), "photos": (photo_items, ("cat", "cup", "motorcycle"))}


def label_config(labels: tuple[str, ...]) -> str:
    return ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
            + "".join(f'<Label value="{label}"/>' for label in labels) + "</RectangleLabels></View>")


def regions(item: Item) -> list[dict]:
    """The ground truth as Label Studio rectangle results (what the annotator submits)."""
    return [{"from_name": "box", "to_name": "image", "type": "rectanglelabels", "original_width": item.width,
             "original_height": item.height, "image_rotation": 0,
             "value": {"x": float(b[0]), "y": float(b[1]), "width": float(b[2] - b[0]), "height": float(b[3] - b[1]),
                       "rotation": 0, "rectanglelabels": [label]}}
            for b, label in zip(item.percent_boxes(), item.labels)]


def shown_regions(predictions: list[dict]) -> tuple[np.ndarray, list[str], str | None]:
    """(percent xyxy boxes, labels, model_version) of the first prediction Label Studio shows (none: empty)."""
    if not predictions:
        return np.zeros((0, 4)), [], None
    boxes, labels = [], []
    for r in predictions[0].get("result") or []:
        v = r.get("value") or {}
        if r.get("type") == "rectanglelabels" and v.get("rectanglelabels"):
            boxes.append([v["x"], v["y"], v["x"] + v["width"], v["y"] + v["height"]])
            labels.append(v["rectanglelabels"][0])
    return np.array(boxes, float).reshape(-1, 4), labels, predictions[0].get("model_version")


@dataclass
class Step:
    """One submitted task: its ground-truth box count, the actions the loop's and the zero-shot pre-label needed."""

    index: int
    task: int
    model_version: str | None
    n_true: int
    loop: dict
    zero_shot: dict
    active_detector: str | None
    at_s: float


@dataclass
class DomainRun:
    name: str
    steps: list[Step] = field(default_factory=list)
    setup_s: float = 0.0
    zero_shot_version: str | None = None
    versions: list[dict] = field(default_factory=list)
    review_order: dict | None = None  # the project's calibration at the end: which score ordered its tasks
    drawing_time: dict | None = None  # what the review measures from the lead times Label Studio stored


class Session:
    """One domain's project in the shared Label Studio and backend."""

    def __init__(self, label_studio, backend, name: str, items: list[Item], labels: tuple[str, ...], extra: dict,
                 annotator_draw_s: float | None = None):
        self.ls = LabelStudio(base_url=label_studio.url, api_key=label_studio.token)
        self.url, self.headers = label_studio.url, {"Authorization": f"Token {label_studio.token}"}
        self.backend = backend
        self.items = {item.name: item for item in items}
        self.config, self.token = label_config(labels), label_studio.token
        self.project = self.ls.projects.create(title=f"session {name}", label_config=self.config).id
        for start in range(0, len(items), 50):  # the wizard's upload, in batches
            files = {f"f{i}": (item.name, item.png, "image/png") for i, item in enumerate(items[start:start + 50])}
            response = requests.post(f"{self.url}/api/projects/{self.project}/import", files=files,
                                     headers=self.headers, timeout=300)
            response.raise_for_status()
        self.ml = self.ls.ml.create(project=self.project, url=backend.url, title="autolabel", extra_params=extra).id
        # the annotators' time as Label Studio records it (`lead_time`): at `annotator_draw_s` a box, or at the
        # drawing speed the project states (7 s when it asks for the measured one, 0)
        self.configured_draw_s = float(extra.get("train_draw_seconds", FAST.draw))
        self.annotators = drawing_model(annotator_draw_s or self.configured_draw_s or FAST.draw)

    def _jobs(self) -> list[dict]:
        return requests.get(f"{self.backend.url}/jobs", params={"project": self.project, "limit": 200},
                            timeout=30).json()["jobs"]

    def wait_for_prelabels(self, timeout_s: float) -> None:
        """Until the Connect's predict jobs are finished (the admin waits for the Predictions column to fill)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            jobs = [j for j in self._jobs() if j["kind"] == "predict"]
            if jobs and all(j["status"] not in ("pending", "running") for j in jobs):
                time.sleep(4)  # the follow-up sets the project's model version and sampling
                return
            time.sleep(2)
        raise TimeoutError(f"project {self.project}: the Connect's pre-labelling did not finish in {timeout_s} s")

    def review_order(self) -> dict | None:
        """What the project's last calibration refit chose (`backend.jobs.calibration.calibration_summary`):
        {"reviewed", "accepted", "calibrated", "probability" (False: an order-only curve, or none), "reason",
        "region_model", "count_model", "rate_mix" (each "learned" / "count" / "mixed" or "default"), and each
        selection's "…_reason", Spearman figures (and the rate mix's k and shares of corrections)}, None before any
        refit."""
        summary = calibration_summary(self.backend.model_dir, self.project)
        if summary["fitted_at"] is None:
            return None
        out = {key: summary[key] for key in ("reviewed", "accepted", "calibrated", "probability", "reason")}
        for key in ("region_model", "count_model", "rate_mix"):
            evidence = summary[key] or {}
            out[key] = evidence.get("score")
            out.update({f"{key}_{k}": v for k, v in evidence.items()
                        if k.startswith(("spearman", "errors_found")) or k in ("reason", "k")})
        return out

    def drawing_time(self) -> dict:
        """The seconds a box took by the lead times Label Studio stored, as the review page measures them
        (`backend.review.drawing`), beside the project's `train_draw_seconds`."""
        connection = LabelStudioConnection(self.url, self.token)
        tasks = read_export(export_for_review(connection, self.project), parse_label_config(self.config))
        return drawing_time(tasks, self.configured_draw_s)

    def close(self, timeout_s: float = 300) -> int:
        """The project is done: its backend connection is removed (no more webhooks) and its unfinished jobs are
        cancelled, so a later domain's project has the backend to itself, as in a run of that domain alone. Returns
        the number of jobs cancelled; waits until none of them runs (a running one stops between two steps)."""
        self.ls.ml.delete(id=self.ml)
        unfinished = [j["id"] for j in self._jobs() if j["status"] in ("pending", "running", "cancelling")]
        for job_id in unfinished:
            requests.post(f"{self.backend.url}/jobs/{job_id}/cancel", timeout=30).raise_for_status()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(
                j["status"] in ("pending", "running", "cancelling") for j in self._jobs()):
            time.sleep(2)
        return len(unfinished)

    def item_of(self, task: dict) -> Item:
        path = task["data"]["image"]
        return next(item for name, item in self.items.items() if path.endswith("-" + name) or path == name)

    def zero_shot_snapshot(self) -> tuple[dict[int, tuple], str | None]:
        """Task id → the regions of its zero-shot prediction (what Connect made), and that model version."""
        response = requests.get(f"{self.url}/api/predictions", params={"project": self.project},
                                headers=self.headers, timeout=120)
        snapshot, version = {}, None
        for prediction in response.json():
            snapshot[prediction["task"]] = shown_regions([prediction])
            version = prediction.get("model_version")
        return snapshot, version

    def active_detector(self) -> str | None:
        answer = requests.get(f"{self.backend.url}/versions", params={"project": self.project}, timeout=30).json()
        return (answer.get("active") or {}).get("detector")

    def label(self, count: int, pace_s: float, run: DomainRun) -> None:
        snapshot, run.zero_shot_version = self.zero_shot_snapshot()
        started = time.monotonic()
        for index in range(count):
            tick = time.monotonic()
            response = requests.get(f"{self.url}/api/projects/{self.project}/next", headers=self.headers, timeout=120)
            if response.status_code != 200:  # 404: no task left for this annotator
                print(f"  /next answered {response.status_code}: {response.text[:200]}", flush=True)
                break
            task = response.json()
            item = self.item_of(task)
            truth = item.percent_boxes()
            boxes, labels, version = shown_regions(task.get("predictions") or [])
            zs_boxes, zs_labels, _ = snapshot.get(task["id"], (np.zeros((0, 4)), [], None))
            loop = actions(boxes, labels, truth, item.labels)
            run.steps.append(Step(index, task["id"], version, len(truth), loop,
                                  actions(zs_boxes, zs_labels, truth, item.labels), self.active_detector(),
                                  round(time.monotonic() - started, 1)))
            self.ls.annotations.create(id=task["id"], result=regions(item), lead_time=seconds(loop, self.annotators))
            if index % 10 == 9:
                step = run.steps[-1]
                print(f"  task {index + 1}: shown {version}, active detector {step.active_detector}, "
                      f"{time.monotonic() - started:.0f} s", flush=True)
            time.sleep(max(0.0, pace_s - (time.monotonic() - tick)))
        run.versions = requests.get(f"{self.backend.url}/versions", params={"project": self.project},
                                    timeout=30).json().get("trained", [])


def _saving(steps: list[Step], key: str, model) -> float:
    manual = sum(manual_seconds(s.n_true, model) for s in steps)
    cost = sum(seconds(getattr(s, key), model) for s in steps)
    return round(100 * (1 - cost / manual), 1) if manual else 0.0


def version_lags(steps: list[Step]) -> dict[str, int | None]:
    """Per detector version that became active: how many tasks the annotators submitted between its activation and
    the first task that showed its pre-label (None: never shown, e.g. superseded first, or serving zero-shot for
    every label). A version shows under a model_version ending in "-<version>" (then "+<zero-shot version>" when it
    serves some labels from the zero-shot pipeline)."""
    activated: dict[str, int] = {}
    for step in steps:
        if step.active_detector:
            activated.setdefault(step.active_detector, step.index)

    def first_shown(version: str, at: int) -> int | None:
        return next((s.index - at for s in steps if s.index >= at and s.model_version
                     and s.model_version.split("+")[0].rsplit("-", 1)[-1] == version), None)
    return {version: first_shown(version, at) for version, at in activated.items()}


def summarise(run: DomainRun, pace_s: float, model=FAST) -> dict:
    """The figures of one domain under one cost model."""
    steps = run.steps
    activation = next((s.index for s in steps if s.active_detector), None)
    shown_trained = next((s.index for s in steps if (s.model_version or "").startswith("project")), None)
    # every 25-task window from the first activation on (one ending at the last task when it came later; all of them
    # when nothing was ever activated: the loop then served what zero-shot serves)
    start = min(activation if activation is not None else 0, max(0, len(steps) - WINDOW))
    windows = [steps[i:i + WINDOW] for i in range(start, max(start + 1, len(steps) - WINDOW + 1))]
    gaps = [_saving(w, "loop", model) - _saving(w, "zero_shot", model) for w in windows]
    half = len(steps) // 2
    lags = version_lags(steps)
    shown_lags = [lag for lag in lags.values() if lag is not None]
    return {"saving_pct": _saving(steps, "loop", model),
            "saving_second_half_pct": _saving(steps[half:], "loop", model),
            "zero_shot_saving_pct": _saving(steps, "zero_shot", model),
            "worst_window_vs_zero_shot": round(min(gaps), 1) if gaps else None, "windows_checked": len(gaps),
            "activations": len({s.active_detector for s in steps if s.active_detector}),
            "first_activation_task": activation, "first_trained_prelabel_task": shown_trained,
            "version_lag_tasks": lags,
            "mean_version_lag_tasks": round(float(np.mean(shown_lags)), 1) if shown_lags else None,
            "tasks": len(steps), "pace_s": pace_s}


def window_costs(run: DomainRun, size: int = 10, model=FAST) -> dict[str, list[float]]:
    """Mean seconds per task in consecutive windows of `size` tasks, per condition."""
    out = {"no pre-labels": [], "zero-shot only": [], "loop": []}
    for i in range(0, len(run.steps), size):
        w = run.steps[i:i + size]
        out["no pre-labels"].append(np.mean([manual_seconds(s.n_true, model) for s in w]))
        out["zero-shot only"].append(np.mean([seconds(s.zero_shot, model) for s in w]))
        out["loop"].append(np.mean([seconds(s.loop, model) for s in w]))
    return out


def plot(runs: list[DomainRun], path: Path, size: int = 10) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 4), squeeze=False)
    for ax, run in zip(axes[0], runs):
        for condition, values in window_costs(run, size).items():
            ax.plot([size * (i + 0.5) for i in range(len(values))], values, marker="o", label=condition)
        activation = next((s.index for s in run.steps if s.active_detector), None)
        if activation is not None:
            ax.axvline(activation, color="grey", linestyle=":", label="first trained version active")
        ax.set_title(f"{run.name}: annotator seconds per task ({FAST.draw:.0f} s per drawn box)")
        ax.set_xlabel(f"task (order Label Studio served them; mean of {size})")
        ax.set_ylabel("seconds per task")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domains", nargs="+", default=list(DOMAINS), choices=list(DOMAINS))
    parser.add_argument("--tasks", type=int, default=150, help="tasks per domain (all are labelled)")
    parser.add_argument("--pace-s", type=float, default=8.0, help="wall-clock seconds between submitted tasks")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--extra", type=json.loads, default={}, help="extra params of every project (JSON)")
    parser.add_argument("--annotator-draw-s", type=float, default=None,
                        help="seconds the simulated annotators take to draw a box, as their lead times record it "
                             "(default: the projects' train_draw_seconds, 7 when unset or 0)")
    parser.add_argument("--quick", action="store_true", help="CI-sized smoke run: 30 tasks per domain, 2 s pace")
    parser.add_argument("--plot", type=Path, default=None, help="write the cost-per-window plot here (PNG)")
    parser.add_argument("--steps", type=Path, default=None, help="write every step here (JSON)")
    parser.add_argument("--from-steps", type=Path, default=None,
                        help="recompute the figures (and --plot) from a --steps file of an earlier run")
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.pace_s = 30, 2.0
    if args.from_steps:
        report(load_runs(args.from_steps), args.pace_s, args.plot)
        return
    binary = label_studio_binary()
    if binary is None:
        raise SystemExit("Label Studio is not installed: run `make install-ls`")
    work = Path(tempfile.mkdtemp(prefix="annotation-session-"))
    label_studio = LabelStudioServer(binary, work / "label-studio")
    backend = BackendServer(work / "backend", label_studio.url, label_studio.token)  # `make serve` defaults
    runs, began = [], time.monotonic()
    try:
        for name in args.domains:
            make_items, labels = DOMAINS[name]
            items = make_items(args.tasks, args.seed)
            run = DomainRun(name)
            t0 = time.monotonic()
            session = Session(label_studio, backend, name, items, labels, args.extra, args.annotator_draw_s)
            session.wait_for_prelabels(1800)
            run.setup_s = round(time.monotonic() - t0, 1)
            print(f"{name}: {len(items)} tasks ({sum(len(i.boxes) for i in items)} boxes), pre-labelled in "
                  f"{run.setup_s} s; labelling at one task per {args.pace_s} s", flush=True)
            session.label(len(items), args.pace_s, run)
            run.review_order = session.review_order()
            run.drawing_time = session.drawing_time()
            runs.append(run)
            if name != args.domains[-1]:
                print(f"{name}: project closed, {session.close()} unfinished jobs cancelled", flush=True)
            figures = summarise(run, args.pace_s)
            print(f"{name}: {json.dumps(figures)}", flush=True)
    finally:
        backend.stop()
        label_studio.stop()
    if args.steps:
        args.steps.write_text(json.dumps({r.name: {"steps": [s.__dict__ for s in r.steps], "versions": r.versions,
                                                   "zero_shot_version": r.zero_shot_version, "setup_s": r.setup_s,
                                                   "review_order": r.review_order, "pace_s": args.pace_s,
                                                   "drawing_time": r.drawing_time}
                                            for r in runs}, indent=1, default=str))
    report(runs, args.pace_s, args.plot, round(time.monotonic() - began))


def load_runs(path: Path) -> list[DomainRun]:
    """The runs of a `--steps` file."""
    runs = []
    for name, saved in json.loads(path.read_text()).items():
        run = DomainRun(name, [Step(**step) for step in saved["steps"]], saved.get("setup_s", 0.0),
                        saved.get("zero_shot_version"), saved.get("versions", []), saved.get("review_order"),
                        saved.get("drawing_time"))
        runs.append(run)
    return runs


def report(runs: list[DomainRun], pace_s: float, plot_path: Path | None, wall_s: int | None = None) -> None:
    """Print each domain's figures and the final JSON line (and write the plot)."""
    if plot_path:
        plot(runs, plot_path)
    domains = {}
    for run in runs:
        domains[run.name] = {**summarise(run, pace_s), "traditional": summarise(run, pace_s, MODELS["traditional"]),
                             "setup_s": run.setup_s, "zero_shot_version": run.zero_shot_version,
                             "review_order": run.review_order, "drawing_time": run.drawing_time}
        print(f"{run.name}: {json.dumps(domains[run.name])}")
    gaps = [d["worst_window_vs_zero_shot"] for d in domains.values() if d["worst_window_vs_zero_shot"] is not None]
    print(json.dumps({"domains": domains,
                      "min_saving_pct": min(d["saving_pct"] for d in domains.values()),
                      "min_saving_second_half_pct": min(d["saving_second_half_pct"] for d in domains.values()),
                      "min_worst_window_vs_zero_shot": min(gaps) if gaps else None,
                      "cost_model": FAST.name, "wall_s": wall_s}))

if __name__ == "__main__":
    main()
