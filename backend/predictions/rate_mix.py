"""A project's rate mix: the review score that puts the pre-labels with the largest share of wrong regions first, as
far as it can without putting the tasks with the most corrections later, the weight chosen on its reviewed tasks.

The served score 1 / (1 + E) (E: a task's expected corrections: `scoring.agreement_errors`, or the region model's,
plus the count model's expected misses where the project chose them; `backend.jobs.calibration`) orders tasks by how
much there is to correct. A tile of 30 trees with 6 doubtful crowns then comes before a tile of 2 trees with both
doubtful, though the second pre-label is the worse one (its F1 is lower). Within one project of many objects per
task the two pull apart (bench/routing.py, DeepForest tiles: a tile's errors grow with its trees, its F1 does not).
The mix weighs both:

    score = errors_score(E / U + E / k) = 1 / (1 + E / U + E / k)        0 when U = 0 (nothing found: first)

U is the task's units: its shown regions, the mirror's regions the image lacks, and the count model's expected
misses where chosen (so E / U in [0, 1] is the expected share of wrong units; 1 - E / U is the two views' mirror
agreement, `scoring.view_agreement`, when E is the agreement errors). A large k orders by the share, a small one by
the corrections.

`select_rate_mix` chooses k from `KS` on the project's reviewed tasks: among the k whose lowest-scored `SHARE` of
those tasks still hold the share of their corrections (false positives + false negatives) that the served score's
lowest `SHARE` hold, to within `TOLERANCE`, the one whose scores rank them by their pre-label's F1 best (Spearman);
chosen only when that beats the served score's Spearman by `MARGIN`. Nothing is fitted but k, one of few values, so
the choice reads the reviewed tasks' own scores (no folds).

Arrays: expected float (N,) >= 0, units float (N,) >= 0, f1 float (N,) in [0, 1], errors float (N,) >= 0, scores
float (N,) in [0, 1].
"""

from __future__ import annotations

import numpy as np

from backend.predictions.scoring import errors_found, spearman

KS = (2.0, 3.0, 5.0, 7.0, 10.0, 14.0, 20.0, 28.0, 40.0)  # the weights tried: corrections per unit of the share
SHARE = 0.3  # the lowest-scored share of the reviewed tasks whose corrections must not fall
TOLERANCE = 0.01  # how far that share of corrections may fall (a share of all the reviewed tasks' corrections)
MARGIN = 0.02  # Spearman with F1 the mix must gain over the served score
MIN_TASKS = 20  # reviewed tasks before a mix is considered


def rate_scores(expected: np.ndarray, units: np.ndarray, k: float) -> np.ndarray:
    """float64 (N,) in [0, 1]: `errors_score(E / U + E / k)` per task, 0 where U is 0."""
    expected, units = np.asarray(expected, np.float64), np.asarray(units, np.float64)
    share = np.divide(expected, units, out=np.zeros_like(expected), where=units > 0)
    return np.where(units > 0, 1.0 / (1.0 + np.maximum(share + expected / k, 0.0)), 0.0)  # errors_score, vectorised


def select_rate_mix(expected: np.ndarray, units: np.ndarray, f1: np.ndarray, errors: np.ndarray,
                    served: np.ndarray, min_tasks: int = MIN_TASKS, ks: tuple[float, ...] = KS
                    ) -> tuple[float | None, np.ndarray | None, dict]:
    """(the chosen k or None, the reviewed tasks' mixed scores float64 (N,) or None, the evidence: {"score":
    "mixed" | "default", "k", "reason", "tasks", "spearman_default", "spearman_mixed", "errors_found_default",
    "errors_found_mixed"}): see the module docstring. `served`: the reviewed tasks' scores as served without the mix
    (the raw score, or the region or count model's out of fold)."""
    evidence = {"score": "default", "k": None, "reason": "", "tasks": len(f1), "spearman_default": None,
                "spearman_mixed": None, "errors_found_default": None, "errors_found_mixed": None}
    if len(f1) < min_tasks:
        evidence["reason"] = f"{len(f1)} reviewed tasks with both views recorded; a rate mix needs {min_tasks}"
        return None, None, evidence
    errors = np.asarray(errors, np.float64)
    if errors.sum() == 0:
        evidence["reason"] = "no reviewed pre-label needed a correction: nothing to order"
        return None, None, evidence
    base_rho, base_found = spearman(np.asarray(served, np.float64), f1), errors_found(served, errors, SHARE)
    evidence.update(spearman_default=_round(base_rho), errors_found_default=round(base_found, 4))
    best = None
    for k in ks:
        scores = rate_scores(expected, units, k)
        rho, found = spearman(scores, f1), errors_found(scores, errors, SHARE)
        if np.isnan(rho) or found < base_found - TOLERANCE:
            continue
        if best is None or rho > best[1]:
            best = (k, rho, found, scores)
    if best is None:
        evidence["reason"] = (f"every mix puts fewer of the reviewed tasks' corrections in their lowest "
                              f"{_pct(SHARE, 0)} than the served score ({_pct(base_found)}, tolerance "
                              f"{_pct(TOLERANCE, 0)})")
        return None, None, evidence
    k, rho, found, scores = best
    evidence.update(spearman_mixed=_round(rho), errors_found_mixed=round(found, 4))
    if not np.isnan(base_rho) and rho < base_rho + MARGIN:
        evidence["reason"] = (f"the best mix (k {k:g}) ranks the reviewed tasks by F1 no better than the served "
                              f"score (Spearman {rho:.3f} vs {base_rho:.3f}, margin {MARGIN})")
        return None, None, evidence
    evidence.update(score="mixed", k=k, reason=(
        f"k {k:g}: Spearman with F1 {rho:.3f} vs {_round(base_rho)} for the served score; its lowest {_pct(SHARE, 0)} "
        f"hold {_pct(found)} of the corrections ({_pct(base_found)} served)"))
    return k, scores, evidence


def _pct(share: float, decimals: int = 1) -> str:
    return f"{100 * share:.{decimals}f} %"


def _round(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value), 4)
