"""Review-priority score of one task's prediction: an estimate in [0, 1] that the pre-label needs no correction.

Label Studio shows predictions lowest score first, so annotators start where the pre-labels are least
trustworthy. Three scores, one per kind of prediction:

**Mirror agreement** (`review_score`, regions: boxes, masks, keypoints): the pipeline runs on the image and
on its horizontal mirror (`mirror_image`; the caller puts both in one batch) and the mirror's regions are
mapped back (`unmirror`: x' = W - x, x1/x2 swapped, masks flipped left-right). A pre-label that needs no
correction is one the model would draw the same way from either view, confidently. Regions of the two views
are matched one to one, same label only, greedily by descending box IoU (ties: lower index in the image first,
then lower index in the mirror), keeping pairs with IoU >= 0.5 (`min_iou`). With K matched pairs (IoU_k,
confidences a_k in the image and b_k in the mirror) and U regions left unmatched in either view (confidences
s_u)::

    score = ( sum_k IoU_k * (a_k + b_k) / 2  +  1/2 * sum_u s_u )  /  (K + U)

i.e. the mean, over the regions of both views taken together (a matched pair counts once), of the confidence a
two-view fusion gives the region (the mean of its confidences in the two views, 0 in a view that lacks it, as in
`backend.models.tta.fuse`), times the IoU of the two boxes for a matched pair. The 1/2 is `unmatched_credit`.
When both views agree exactly the score equals the mean region confidence (the old task score); a box missed or
invented in one view (it keeps half its confidence and adds a region), a box drawn differently (loose, shifted,
split: its IoU, or two half-credited regions below IoU 0.5), or low confidences each lower it. Empty predictions
in both views score 0: the model found nothing to pre-label, so the task is reviewed first (an image that truly
shows nothing is quick to confirm; one whose objects were all missed is the worst pre-label). Regions in one view
only: every region is unmatched, so the score is half their mean confidence. A detector that already fuses
dihedral test-time views of the image (`tta_views` >= 2) predicts the same on the image and its mirror (its views
are the same set), so there the mirror pass adds nothing and the confidence-only score is the one to use; one that
fuses views of its backbone maps (`backend.models.map_views`, the cached recipe's default) reads the mirror image
through a second backbone pass, so the mirror still disagrees where the image is ambiguous (bench/routing.py,
DeepForest tiles: agreement errors find 54 % of the errors in the lowest 30 %, confidence only 35 %).

**Confidence only** (`confidence_score`, for projects that switch the mirror pass off): a function of the
region confidences of the one view; `mean` (the default and the old task score), `min`, `geometric`
(geometric mean), `product` or `lower_half` (mean of the lower half, the lowest ceil(N/2) scores). Empty
predictions score 0.

**More views** (`view_agreement`): the mirror formula over V views of one image (e.g. the 8 dihedral views of
top-down imagery; each view is one more pass), their regions mapped back to the image. Each region of view 0 (the
regions served) is matched one to one, same label, IoU >= `min_iou`, to the regions of every other view; its fused
confidence is (1/V) x (its own term + the sum over the other views of IoU x the match's confidence, 0 in a view
without a match). Regions of
the other views left unmatched are grouped (same label, IoU >= `min_iou`, highest confidence first, at most one
region of each view per group), each group one unit with (1/V) x its confidences' sum. A served region's own term
is its confidence x the mean IoU of its matches (1 without any), so with V = 2 a matched pair fuses to
IoU x (a + b) / 2 and the score is `review_score` with `unmatched_credit` 1/2.

**Agreement errors** (`agreement_errors`, the service's default `review_score: "errors"`): the corrections the
views leave expected, E = sum over the units above of (1 - the unit's fused confidence); the score is
`errors_score(E)` = 1 / (1 + E). -log of the chance that every region is right is about E when each is right with
its fused confidence, so this orders tasks by the chance the pre-label is accepted unchanged: a task with many
doubtful regions comes before one with a single doubtful region (mirror agreement, a mean, puts them level).
`errors_review_score` is that score, except that no region in any view scores 0 (reviewed first, as above).

**Expected errors** (`expected_errors`, counts, for the lowest-first order of a project of many objects per task):
the pipeline's candidates down to a floor (a detector's proposals under its cut), their scores read as
probabilities: each shown region (score >= `cut`) is a wrong box with probability 1 - p, each candidate under the
cut overlapping no shown region of its label by IoU >= `min_iou` (after merging such candidates among themselves)
an object missed with probability p. E = sum of both; `errors_score` maps it into (0, 1]: 1 / (1 + E), lower = more
corrections expected. Mirror agreement estimates how *right* a pre-label is; expected errors how *much* there is
to correct; `expected_f1` combines them into the F1 a reviewer would measure: 2S / (2S + E) with S the shown
regions' summed probability (1 when nothing is shown nor expected).

**Choices** (`choice_margin`, image-level classification): top-1 minus top-2 label probability (top-1 alone
when there is one label, 0 for none).

All scores are Python floats in [0, 1]. Pure functions: no model, no Label Studio.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from backend.core.detections import Detections, box_iou

MIN_IOU = 0.5
UNMATCHED_CREDIT = 0.5
CONFIDENCE_RULES = ("mean", "min", "geometric", "product", "lower_half")


def mirror_image(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W[, C]) image → its horizontal mirror, same shape and dtype, contiguous."""
    return np.ascontiguousarray(image[:, ::-1])


def unmirror(dets: Detections, width: int | None = None) -> Detections:
    """Regions found on the mirror of a `width`-pixel-wide image → the same regions in the image itself.

    Boxes: x1' = W - x2, x2' = W - x1 (pixels, exact in float32 for integer and .5 coordinates); masks (at image
    size or a smaller working size of the same image) flipped left-right; scores and labels unchanged.
    `width` defaults to `dets.image_size.width`. Mirroring is its own inverse: `unmirror` also maps regions of
    the image onto its mirror.
    """
    width = dets.image_size.width if width is None else width
    xyxy = dets.xyxy.copy()
    xyxy[:, [0, 2]] = np.float32(width) - dets.xyxy[:, [2, 0]]
    masks = None if dets.masks is None else np.ascontiguousarray(dets.masks[:, :, ::-1])
    return Detections(xyxy, dets.scores, dets.labels, dets.image_size, masks)


def match_regions(a: Detections, b: Detections, min_iou: float = MIN_IOU) -> list[tuple[int, int, float]]:
    """One-to-one matches [(index in a, index in b, IoU)] between regions of the same label, greedy by
    descending box IoU (ties: lower a index, then lower b index), only pairs with IoU >= `min_iou`."""
    if len(a) == 0 or len(b) == 0:
        return []
    iou = box_iou(a.xyxy, b.xyxy)
    same = np.array(a.labels, dtype=object)[:, None] == np.array(b.labels, dtype=object)[None, :]
    rows, cols = np.nonzero(same & (iou >= min_iou))
    order = np.lexsort((cols, rows, -iou[rows, cols]))
    used_a, used_b, out = set(), set(), []
    for i, j in zip(rows[order], cols[order]):
        if i not in used_a and j not in used_b:
            used_a.add(int(i))
            used_b.add(int(j))
            out.append((int(i), int(j), float(iou[i, j])))
    return out


def review_score(image_dets: Detections, mirror_dets: Detections, min_iou: float = MIN_IOU,
                 unmatched_credit: float = UNMATCHED_CREDIT) -> float:
    """Mirror-agreement score in [0, 1] (formula in the module docstring).

    image_dets: regions predicted on the image; mirror_dets: regions predicted on `mirror_image(image)`, as the
    pipeline returned them (in the mirror's pixels; mapped back here with `unmirror`). unmatched_credit: the
    share of its confidence a region seen in one view only keeps (0.5: as in a two-view fusion; 0: none).
    """
    back = unmirror(mirror_dets, image_dets.image_size.width)
    pairs = match_regions(image_dets, back, min_iou)
    units = len(image_dets) + len(back) - len(pairs)
    if units == 0:
        return 0.0
    agreed = sum(iou * (float(image_dets.scores[i]) + float(back.scores[j])) / 2 for i, j, iou in pairs)
    alone = (float(image_dets.scores.sum()) + float(back.scores.sum())
             - sum(float(image_dets.scores[i]) + float(back.scores[j]) for i, j, _ in pairs))
    return _unit((agreed + unmatched_credit * alone) / units)


def view_agreement(views: Sequence[Detections], min_iou: float = MIN_IOU) -> float:
    """Agreement score in [0, 1] of V >= 1 views of one image (formula in the module docstring).

    views: regions of each view mapped back to the image's pixels; views[0] holds the regions served. 0 when no
    view has a region.
    """
    units = _fused_units(views, min_iou)
    return _unit(sum(units) / len(units)) if units else 0.0


def _fused_units(views: Sequence[Detections], min_iou: float) -> list[float]:
    """The fused confidence in [0, 1] of each unit of `view_agreement`: the served regions, then the groups of the
    other views' unmatched regions (at most one region of each view per group)."""
    served, n_views = views[0], len(views)
    other_terms = [0.0] * len(served)  # sum over the other views of IoU x the match's confidence
    ious: list[list[float]] = [[] for _ in range(len(served))]
    leftovers = []
    for v, other in enumerate(views[1:], start=1):
        pairs = match_regions(served, other, min_iou)
        for i, j, iou in pairs:
            other_terms[i] += iou * float(other.scores[j])
            ious[i].append(iou)
        matched = {j for _, j, _ in pairs}
        leftovers += [(float(other.scores[j]), other.xyxy[j], other.labels[j], v) for j in range(len(other))
                      if j not in matched]
    fused = [float(served.scores[i]) * (float(np.mean(ious[i])) if ious[i] else 1.0) + other_terms[i]
             for i in range(len(served))]
    groups: list[list] = []  # [summed confidence, box, label, views in it]
    for score, box, label, v in sorted(leftovers, key=lambda r: -r[0]):
        for group in groups:
            if group[2] == label and v not in group[3] and float(box_iou(group[1][None], box[None])[0, 0]) >= min_iou:
                group[0] += score
                group[3].add(v)
                break
        else:
            groups.append([score, box, label, {v}])
    return [min(1.0, max(0.0, c / n_views)) for c in fused + [g[0] for g in groups]]


def agreement_errors(views: Sequence[Detections], min_iou: float = MIN_IOU) -> float:
    """Expected corrections (a count >= 0) read from the agreement of V >= 1 views (regions mapped back to the
    image; views[0] served): the sum over `view_agreement`'s units of 1 - the unit's fused confidence, i.e. each
    region is wrong with the probability its views leave to it. Needs no candidates under the cut."""
    return sum(1.0 - c for c in _fused_units(views, min_iou))


def agreement_units(views: Sequence[Detections], min_iou: float = MIN_IOU) -> int:
    """The units `view_agreement` and `agreement_errors` read (>= 0): the served regions, then the groups of the other
    views' regions they lack."""
    return len(_fused_units(views, min_iou))


def errors_review_score(views: Sequence[Detections], min_iou: float = MIN_IOU) -> float:
    """The default review score in [0, 1]: `errors_score(agreement_errors(views))`, and 0 when no view has a region
    (nothing found: reviewed first, as with `review_score`)."""
    if not any(len(v) for v in views):
        return 0.0
    return errors_score(agreement_errors(views, min_iou))


def _missed_candidates(dets: Detections, cut: float, min_iou: float) -> list[float]:
    """Scores of the candidates under `cut` that overlap no shown region (score >= cut) of their label by IoU >=
    `min_iou`, merged among themselves (same label, IoU >= `min_iou`; each group keeps its highest score)."""
    shown = dets.scores >= cut
    kept: list[int] = []
    for i in np.argsort(-dets.scores, kind="stable"):
        if shown[i]:
            continue
        rivals = [j for j in list(np.nonzero(shown)[0]) + kept if dets.labels[j] == dets.labels[i]]
        if rivals and float(box_iou(dets.xyxy[i][None], dets.xyxy[rivals]).max()) >= min_iou:
            continue
        kept.append(int(i))
    return [float(dets.scores[i]) for i in kept]


def expected_errors(dets: Detections, cut: float, min_iou: float = MIN_IOU) -> float:
    """Expected corrections (wrong shown boxes + missed objects, a count >= 0) of a pre-label from its candidates
    (`dets`: every region down to the pipeline's floor, scores in [0, 1]); regions with score >= `cut` are the ones
    shown. Formula in the module docstring."""
    scores = np.clip(dets.scores.astype(np.float64), 0.0, 1.0)
    wrong = float((1.0 - scores[scores >= cut]).sum())
    return wrong + float(sum(_missed_candidates(dets, cut, min_iou)))


def errors_score(expected: float) -> float:
    """Expected errors (>= 0) → score in (0, 1]: 1 / (1 + E); lower = more to correct."""
    return _unit(1.0 / (1.0 + max(float(expected), 0.0)))


def expected_f1(dets: Detections, cut: float, min_iou: float = MIN_IOU) -> float:
    """2S / (2S + E) in [0, 1]: S the shown regions' summed score, E `expected_errors`; 1 when both are 0."""
    scores = np.clip(dets.scores.astype(np.float64), 0.0, 1.0)
    right = float(scores[scores >= cut].sum())
    wrong = expected_errors(dets, cut, min_iou)
    return 1.0 if right + wrong == 0 else _unit(2 * right / (2 * right + wrong))


def confidence_score(dets: Detections, rule: str = "mean") -> float:
    """Score in [0, 1] from the region confidences of one view (`rule` in `CONFIDENCE_RULES`); 0 when empty."""
    if rule not in CONFIDENCE_RULES:
        raise ValueError(f"unknown confidence rule {rule!r}; use one of {CONFIDENCE_RULES}")
    scores = np.clip(dets.scores.astype(np.float64), 0.0, 1.0)
    if scores.size == 0:
        return 0.0
    if rule == "mean":
        value = scores.mean()
    elif rule == "min":
        value = scores.min()
    elif rule == "geometric":
        value = np.exp(np.log(np.maximum(scores, 1e-12)).mean())
    elif rule == "product":
        value = scores.prod()
    else:
        value = np.sort(scores)[: (scores.size + 1) // 2].mean()
    return _unit(value)


def choice_margin(probabilities: Mapping[str, float] | Sequence[float] | np.ndarray) -> float:
    """Top-1 minus top-2 of per-label probabilities (a {label: probability} mapping or a float sequence),
    clipped to [0, 1]; top-1 alone with one label; 0 with none."""
    values = probabilities.values() if isinstance(probabilities, Mapping) else probabilities
    p = np.sort(np.clip(np.asarray(list(values), np.float64).reshape(-1), 0.0, 1.0))[::-1]
    if p.size == 0:
        return 0.0
    return _unit(p[0] - (p[1] if p.size > 1 else 0.0))


def _unit(value: float) -> float:
    return float(min(1.0, max(0.0, value)))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two equal-length float arrays; NaN when either is constant."""
    from scipy.stats import spearmanr  # only the selections at a calibration refit need it, not the predict path

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def ranks_better(default: np.ndarray, candidate: np.ndarray, f1: np.ndarray, margin: float, what: str
                 ) -> tuple[bool, float | None, float | None, str]:
    """(whether the `candidate` scores rank the tasks by `f1` better than the `default` scores by at least `margin`
    Spearman, the default's and the candidate's Spearman rounded to 4 decimals (None where undefined), why in words;
    `what` names the candidate score): how a project chooses a learned score over the one it has."""
    before, after = spearman(default, f1), spearman(candidate, f1)
    before_r = None if np.isnan(before) else round(before, 4)
    after_r = None if np.isnan(after) else round(after, 4)
    if np.isnan(after) or (not np.isnan(before) and after < before + margin):
        return False, before_r, after_r, (f"out of fold, the {what} score ranks the reviewed tasks by F1 no better "
                                          f"than the default one (Spearman {after_r} vs {before_r}, margin {margin})")
    return True, before_r, after_r, f"out of fold, Spearman with F1 {after_r} vs {before_r} for the default score"


def errors_found(scores: np.ndarray, errors: np.ndarray, fraction: float) -> float:
    """Share of all `errors` (float (N,) >= 0, e.g. each task's false positives + false negatives) held by the
    lowest-scored round(fraction x N) tasks of `scores` (float (N,)); a tie group straddling the cut contributes its
    errors in proportion to the part of it taken (the expectation over tie orders). NaN when there are no errors."""
    scores, errors = np.asarray(scores, float), np.asarray(errors, float)
    total, k = errors.sum(), int(round(fraction * len(scores)))
    if total == 0:
        return float("nan")
    below = scores < np.sort(scores)[k - 1] if k > 0 else np.zeros(len(scores), bool)
    found = errors[below].sum()
    if k > 0:
        tie = scores == np.sort(scores)[k - 1]
        found += errors[tie].sum() * (k - below.sum()) / tie.sum()
    return float(found / total)
