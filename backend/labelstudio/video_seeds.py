"""Which `videorectangle` boxes an annotator drew on a video task, for the backend to carry through the next frames.

What Label Studio 1.23 sends (read from its source, `ml/models.py`, `data_export/serializers.py`, and the editor): the
video editor has no smart tool, so drawing a `VideoRectangle` box never sends an interactive request by itself. A
video task reaches `/predict` with the annotator's regions in two ways:
- `POST /api/ml/{id}/interactive-annotating` with `{"task": T, "context": {...}}` (the SDK's `predict_interactive`):
  Label Studio adds the task's `drafts` and `annotations` of the requesting user (`InteractiveMixin`) and passes the
  `context` through as `params.context`;
- the Data Manager's "Retrieve Predictions" action (and every `/predict` call Label Studio makes for tasks): tasks carry
  their `annotations` (`TaskSimpleSerializer`), not drafts.

The boxes to carry are the control's `videorectangle` regions of `params.context.result` when it has any; else those of
the task's newest draft; else of its newest annotation (cancelled ones skipped). A region is carried from its last
keyframe (by frame) when that keyframe is enabled (the box is still on screen after it); a region whose last keyframe
is disabled was ended by the annotator and is kept as it is; when no region is carried, the task is predicted as any
video task.
"""

from __future__ import annotations

from typing import Any

from backend.core.ontology import Control

VIDEO_RECTANGLE = "videorectangle"


def seed_regions(task: dict[str, Any], context: Any, control: Control) -> list[dict[str, Any]]:
    """The `videorectangle` regions of `control` the annotator drew (see the module docstring for where from), in
    their order; empty when there are none."""
    result = context.get("result") if isinstance(context, dict) else None
    found = _of_control(result, control)
    if found:
        return found
    for key in ("drafts", "annotations"):
        newest = _newest(task.get(key))
        if newest is not None:
            found = _of_control(newest.get("result"), control)
            if found:
                return found
    return []


def carried(region: dict[str, Any]) -> bool:
    """Whether the region is carried forward: it has keyframes and its last one (by frame) is enabled. A region with
    a keyframe whose frame is unreadable counts as carried, so that the carrying names it as malformed."""
    sequence = [k for k in ((region.get("value") or {}).get("sequence") or []) if isinstance(k, dict)]
    if not sequence:
        return False
    try:
        last = max(sequence, key=lambda k: float(k["frame"]))
    except (KeyError, TypeError, ValueError):
        return True
    return last.get("enabled", True) is not False


def _of_control(result: Any, control: Control) -> list[dict[str, Any]]:
    if not isinstance(result, list):
        return []
    return [r for r in result if isinstance(r, dict) and str(r.get("type", "")).lower() == VIDEO_RECTANGLE
            and r.get("from_name", control.name) == control.name and isinstance(r.get("value"), dict)
            and isinstance(r["value"].get("sequence"), list)]


def _newest(items: Any) -> dict[str, Any] | None:
    """The most recently updated (else created, else last listed) usable draft or annotation."""
    if not isinstance(items, list):
        return None
    usable = [(n, item) for n, item in enumerate(items) if isinstance(item, dict) and not item.get("was_cancelled")]
    if not usable:
        return None
    return max(usable, key=lambda pair: (str(pair[1].get("updated_at") or pair[1].get("created_at") or ""),
                                         pair[0]))[1]
