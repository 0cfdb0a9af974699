"""Per-label source selection: each label is served by the project's trained detector or by the zero-shot pipeline,
whichever scores better on the same held-out tasks (`backend.training.comparison` passes minus the annotation seconds
their pre-labels would take to correct), re-decided at every version; and the activation rule that follows from it
(a version becomes active only if what it would serve beats what serves now).

Scores are floats, higher is better, or NaN for a label without a held-out box (no evidence either way).
"""

from __future__ import annotations

import math

from backend.registry.versions import DETECTOR_SOURCE, ZERO_SHOT_SOURCE


def _known(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def choose_sources(detector_ap50: dict[str, float], zero_shot_ap50: dict[str, float], zero_shot_covers: set[str],
                   previous: dict[str, str] | None = None, held_out: bool = True) -> dict[str, str]:
    """Label → DETECTOR_SOURCE or ZERO_SHOT_SOURCE for every label the detector was trained on.

    A label the zero-shot pipeline cannot predict goes to the detector. Otherwise, with held-out evidence
    (`held_out`: the detector was scored on tasks it did not train on) the higher AP50 wins, a tie keeps the
    previous version's choice (zero-shot when there is none); without evidence (no held-out box of the label, or
    the detector scored on its own training tasks) the previous choice stays, else zero-shot."""
    previous = previous or {}
    sources = {}
    for label, ap in detector_ap50.items():
        if label not in zero_shot_covers:
            sources[label] = DETECTOR_SOURCE
        elif held_out and _known(ap) and _known(zero_shot_ap50.get(label)) and ap != zero_shot_ap50[label]:
            sources[label] = DETECTOR_SOURCE if ap > zero_shot_ap50[label] else ZERO_SHOT_SOURCE
        else:
            sources[label] = previous.get(label, ZERO_SHOT_SOURCE)
    return sources


def served_score(sources: dict[str, str], detector: dict[str, float], zero_shot: dict[str, float],
                 labels: list[str]) -> float | None:
    """Mean over `labels` with held-out evidence of the score of the source serving each (a label absent from
    `sources`, i.e. unknown to the detector, is served by the zero-shot pipeline; a label the zero-shot pipeline
    does not cover scores 0 there). None when no label has evidence."""
    values = []
    for label in labels:
        source = sources.get(label, ZERO_SHOT_SOURCE)
        value = detector.get(label) if source == DETECTOR_SOURCE else zero_shot.get(label, 0.0)
        if _known(detector.get(label)) or _known(zero_shot.get(label)):
            values.append(value if _known(value) else 0.0)
    return round(sum(values) / len(values), 4) if values else None


def serves_better(metrics: dict) -> bool:
    """A detector version's activation rule from its metrics: the annotation time its pre-labels would take to correct
    on the held-out tasks with its per-label sources and score cuts (`effort.served_s`) is below what serves now
    (`effort.baseline_served_s`: the active version with its sources and cuts, or the zero-shot pipeline alone when
    nothing is active), all on the same tasks; a tie keeps what serves. Metrics without `effort` (written before it):
    the (AP50, AP) served, `served_ap50` then `served_ap`, against `baseline_served_*`."""
    effort = metrics.get("effort")
    if effort is not None:
        return effort["served_s"] < effort["baseline_served_s"]
    new = (metrics.get("served_ap50") or 0.0, metrics.get("served_ap") or 0.0)
    old = (metrics.get("baseline_served_ap50") or 0.0, metrics.get("baseline_served_ap") or 0.0)
    return new > old
