"""Per-label source selection: each label is served by the project's trained detector or by the zero-shot pipeline,
whichever has the higher AP50 on the same held-out tasks, re-decided at every version; and the activation rule
that follows from it (a version becomes active only if what it would serve beats what serves now).

AP values are floats in [0, 1], or NaN for a label without a held-out box (no evidence either way).
"""

from __future__ import annotations

import math

from backend.registry.versions import DETECTOR_SOURCE, ZERO_SHOT_SOURCE


def _known(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def choose_sources(detector_ap50: dict[str, float], zero_shot_ap50: dict[str, float], zero_shot_covers: set[str],
                   previous: dict[str, str] | None = None) -> dict[str, str]:
    """Label → DETECTOR_SOURCE or ZERO_SHOT_SOURCE for every label the detector was trained on.

    With held-out evidence for the label: the detector when its AP50 is higher (on a tie, when the zero-shot
    pipeline cannot predict the label at all). Without: the previous version's choice, else the zero-shot pipeline
    when it covers the label, else the detector."""
    previous = previous or {}
    sources = {}
    for label, ap in detector_ap50.items():
        zero_shot = zero_shot_ap50.get(label) if label in zero_shot_covers else 0.0
        if _known(ap):
            better = ap > zero_shot or (ap == zero_shot and label not in zero_shot_covers)
            sources[label] = DETECTOR_SOURCE if better else ZERO_SHOT_SOURCE
        elif label in previous:
            sources[label] = previous[label]
        else:
            sources[label] = ZERO_SHOT_SOURCE if label in zero_shot_covers else DETECTOR_SOURCE
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
    """A detector version's activation rule from its metrics: what it would serve (`served_ap50`, then `served_ap`)
    beats what serves now (`baseline_served_ap50` / `baseline_served_ap`: the active version with its sources, or
    the zero-shot pipeline alone when nothing is active), all on the same held-out tasks. A tie keeps what serves."""
    new = (metrics.get("served_ap50") or 0.0, metrics.get("served_ap") or 0.0)
    old = (metrics.get("baseline_served_ap50") or 0.0, metrics.get("baseline_served_ap") or 0.0)
    return new > old
