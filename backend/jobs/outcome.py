"""How a job ends, from what its handler returned: the status and the one-line message `/jobs`, `/health` and the
log show (a handler that raises ends `failed` with the error; see `backend.jobs.runner`).

- `skipped` (any kind): the handler said there was nothing it could do yet, e.g. "5 annotations; training starts
  at 10", or no kind of model had usable data.
- predict: every task failed → `failed`, with the most frequent reasons; some failed → `done` with "n of N tasks
  failed" and those reasons; none to predict → `done` saying why.
- train: `done`, naming each version trained and whether it became active.
"""

from __future__ import annotations

import re
from collections import Counter

from backend.jobs.queue import PREDICT_JOB, TRAIN_JOB

TOP_REASONS = 3
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def top_reasons(failed: list[dict], limit: int = TOP_REASONS) -> str:
    """The most frequent failure reasons of [{"task", "reason"}] as "12× image URL '…' returned HTTP 404; 3× …"
    (quoted parts such as URLs are left out, so one cause counts once)."""
    counts = Counter(_QUOTED.sub("'…'", str(f.get("reason", ""))) for f in failed)
    return "; ".join(f"{n}× {reason}" for reason, n in counts.most_common(limit))


def job_outcome(kind: str, result: dict) -> tuple[str, str]:
    """(status, message) of a job whose handler returned `result` (see the module docstring)."""
    if isinstance(result.get("skipped"), str):
        return "skipped", result["skipped"]
    if kind == PREDICT_JOB:
        return _predict_outcome(result)
    if kind == TRAIN_JOB:
        return "done", _train_message(result)
    return "done", "ok"


def _predict_outcome(result: dict) -> tuple[str, str]:
    status, message = _predict_status(result)
    missing = list(result.get("not_predicted") or {})
    if missing and status == "done":
        message += f"; labels not pre-labelled: {', '.join(missing)} (see not_predicted)"
    return status, message


def _predict_status(result: dict) -> tuple[str, str]:
    failed = result.get("failed") or []
    tasks_failed = len({f.get("task") for f in failed})
    total, predicted = int(result.get("total") or 0), int(result.get("predicted") or 0)
    if total == 0 and not failed:
        skipped = {k: v for k, v in (result.get("skipped") or {}).items() if v}
        why = ", ".join(f"{n} {reason}" for reason, n in skipped.items()) or "no tasks"
        return "done", f"nothing to predict ({why})"
    if predicted == 0 and tasks_failed:
        return "failed", f"all {tasks_failed} tasks failed: {top_reasons(failed)}"
    if tasks_failed:
        return "done", f"{predicted} of {predicted + tasks_failed} tasks predicted, {tasks_failed} failed: " \
                       f"{top_reasons(failed)}"
    return "done", f"{predicted} tasks predicted"


def _drawing(drawing: dict | None) -> str:
    """What a detector version's cuts were fitted for when the project asks for its measured drawing time
    (`train_draw_seconds` 0, `backend.jobs.training.measured_drawing`)."""
    if not drawing:
        return ""
    if drawing.get("applied_from") == "measured":
        return (f", cuts fitted for {drawing['applied_s']:g} s a box, measured from {drawing['n_annotations']} "
                "annotations' lead times")
    why = drawing.get("reason") or (f"the measured {drawing['seconds_per_box']:g} s is too uncertain "
                                    f"({drawing['low']:g}–{drawing['high']:g} s)")
    return f", cuts fitted for {drawing.get('applied_s', 7):g} s a box until the drawing time is measured ({why})"


def _train_message(result: dict) -> str:
    parts = []
    for kind, summary in result.items():
        if not isinstance(summary, dict):
            continue
        if "skipped" in summary:
            parts.append(f"{kind} skipped: {summary['skipped']}")
            continue
        metric = "ap50" if "ap50" in summary else "accuracy"
        value, baseline = summary.get(metric), summary.get(f"baseline_{metric}")
        score = f"{metric} {value:.3f}" if isinstance(value, (int, float)) else metric
        if isinstance(baseline, (int, float)):
            score += f" vs {baseline:.3f} active"
        parts.append(f"{kind} {summary.get('version')} ({score}): " +
                     ("activated" if summary.get("activated") else "not activated (the active version stays)") +
                     _drawing(summary.get("drawing_time")))
    return "; ".join(parts) or "ok"
