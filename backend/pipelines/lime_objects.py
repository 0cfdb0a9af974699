"""Objects from LIME perturbations: which labels are in the picture, where each object is, how sure we are.

Pure functions of an `Explanation` (numpy in, numpy out), in the order `find_objects` applies them:

1. `lime_fit`: per label, LIME's local model (its sample kernel and ridge) fitted to the label's log-odds, with
   a penalty that pulls touching superpixels of similar colour towards the same weight (`smoothing_penalty`).
   Log-odds keep the signal of a label the whole image barely shows (a small second object at probability
   0.001-0.05) and of a label two objects saturate; the smoothing fills an object's extent and damps lone noisy
   superpixels. Every weight comes with its standard error.
2. `object_regions`: per label, connected groups of superpixels with clearly positive weight (hysteresis: a
   group needs a seed >= `seed_fraction` x the label's top weight and `SEED_NOISE` standard errors, and grows
   over touching superpixels >= `grow_fraction` x the top weight and `GROW_NOISE` standard errors). A label the
   whole image is sure of (>= `DOMINANT`) must be explained by its groups (`label_explained`: hiding them makes
   it fade); if not, as for a big cat recognised from any half of its face, the groups grow less strictly
   (`RELAX_STEPS`).
3. `split_at_valleys`: a group in which two peaks meet only through much weaker superpixels is two objects
   (two cats side by side); for a label the whole image is sure of, `extend_by_colour` carries each object over
   touching superpixels of nearly its colour that LIME also found telling, if too noisy to grow over (LIME
   marks a cat's eyes more than its cheeks; at 0.05 x the top weight instead of 0.2 it leaked into backgrounds
   of the object's colour: 2-object composites of `bench/lime_multi.py` 0.775 recall and precision vs 0.825);
   `merge_overlapping`: groups of one label whose boxes overlap are one object (a motorbike whose saddle was not
   kept).
4. `region_evidence`: the label's probability in the best view that shows the object: the whole image, a window
   (`Explanation.windows`, classified with the perturbations) containing most of the object's box, or the
   perturbed copies in which the object's superpixels are on. Objects under `min_score` are dropped. The box's
   score is the evidence x the fraction of the box the object's superpixels fill (`region_fill`), so a box
   around two objects, or around an object and a stray patch, ranks below a tight one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import csgraph

from backend.pipelines.lime_explain import KERNEL_WIDTH, RIDGE_ALPHA, Explanation

LOGIT_BOUND = 20.0      # log-odds are clipped to [-bound, bound] (p within 2e-9 of 0 or 1)
SMOOTHING = 30.0        # strength of the pull between touching superpixels of similar colour
COLOUR_SCALE = 5.0      # CIELAB distance at which that pull falls to exp(-1/2) of its full strength
SEED_NOISE = 2.0        # a seed's weight is at least this many standard errors ...
SEED_PEER = 0.8         # ... unless it is this close to the label's top weight (and some seed stood out)
GROW_NOISE = 1.0        # a grown superpixel's weight is at least this many standard errors
VALLEY = 0.5            # two peaks joined only below this x the lower peak are two objects
MERGE_OVERLAP = 0.5     # regions of one label whose boxes overlap by this x the smaller box are one object
WINDOW_CONTAIN = 0.6    # a window speaks for an object when it contains this fraction of the object's box
SHOWN_FRACTION = 0.75   # a perturbed copy shows an object when this fraction of its superpixels is on
HIDDEN_FRACTION = 0.25  # ... and hides it when at most this fraction is on
DOMINANT = 0.5          # a label this probable in the whole image is a big or clear object: its regions must
RESIDUAL = 0.3          # explain it (hidden, it falls under this x its probability when shown), and they extend
EXTEND_COLOUR = 10.0    # over touching superpixels at most this CIELAB distance from a member's colour
EXTEND_WEIGHT = 0.2     # whose weight is at least this x the top weight
RELAX_STEPS = ((1.0, 1.0), (2 / 3, 0.5), (1 / 3, 0.0), (0.0, 0.0))  # (x grow_fraction, x GROW_NOISE) tried in turn


@dataclass(frozen=True)
class LocalModel:
    """Per-label linear model of log-odds on superpixel masks: weights, stderr float64 (L, S); intercept (L,)."""

    weights: np.ndarray
    stderr: np.ndarray
    intercept: np.ndarray


@dataclass(frozen=True)
class ObjectRegion:
    """One object: `label` index into the explanation's label groups, `superpixels` int (K,) indices,
    `box` float32 (4,) xyxy in image pixels, `score` in [0, 1]: the label's probability in the best view showing
    the object (`region_evidence`) x the fraction of the box its superpixels fill (`region_fill`)."""

    label: int
    superpixels: np.ndarray
    box: np.ndarray
    score: float


def superpixel_adjacency(segments: np.ndarray) -> np.ndarray:
    """bool (S, S): which superpixels of int (h, w) labels 0..S-1 touch (4-neighbourhood); diagonal False."""
    n = int(segments.max()) + 1
    adjacent = np.zeros((n, n), bool)
    for a, b in ((segments[:, :-1], segments[:, 1:]), (segments[:-1, :], segments[1:, :])):
        differ = a != b
        adjacent[a[differ], b[differ]] = True
        adjacent[b[differ], a[differ]] = True
    return adjacent


def smoothing_penalty(adjacent: np.ndarray, colours: np.ndarray, strength: float = SMOOTHING,
                      colour_scale: float = COLOUR_SCALE) -> np.ndarray:
    """float64 (S, S) penalty matrix P with w.T P w = strength x sum over touching pairs of a_ik (w_i - w_k)^2.

    adjacent: bool (S, S); colours: float (S, 3) CIELAB means; a_ik = exp(-|c_i - c_k|^2 / (2 colour_scale^2)),
    so weights are pulled together inside a uniformly coloured object and hardly across a colour edge.
    """
    distance2 = ((colours[:, None, :].astype(np.float64) - colours[None, :, :]) ** 2).sum(-1)
    affinity = np.where(adjacent, np.exp(-distance2 / (2.0 * colour_scale ** 2)), 0.0)
    return strength * (np.diag(affinity.sum(1)) - affinity)


def lime_fit(samples: np.ndarray, log_odds: np.ndarray, penalty: np.ndarray | None = None,
             bound: float = LOGIT_BOUND, alpha: float = RIDGE_ALPHA, kernel_width: float = KERNEL_WIDTH) -> LocalModel:
    """LIME's weighted ridge (same sample kernel, alpha and intercept) of each label's log-odds on the masks.

    samples: bool (N, S), row 0 all on; log_odds: float (N, L), clipped to [-bound, bound]; penalty: optional
    float (S, S) positive semi-definite matrix added to the ridge's normal equations. Standard errors: weighted
    residual variance (N_eff - S degrees of freedom) x the diagonal of the inverse normal matrix.
    """
    z = samples.astype(np.float64)
    y = np.clip(log_odds.astype(np.float64), -bound, bound)
    cos = z @ z[0] / np.maximum(np.linalg.norm(z, axis=1) * np.linalg.norm(z[0]), 1e-12)
    w = np.sqrt(np.exp(-((1.0 - cos) ** 2) / kernel_width ** 2))
    z_mean, y_mean = w @ z / w.sum(), w @ y / w.sum()
    zc, yc = z - z_mean, y - y_mean
    normal = zc.T @ (w[:, None] * zc) + alpha * np.eye(z.shape[1])
    if penalty is not None:
        normal = normal + penalty
    inverse = np.linalg.inv(normal)
    coef = inverse @ (zc.T @ (w[:, None] * yc))  # (S, L)
    variance = (w @ (yc - zc @ coef) ** 2) / max(w.sum() - z.shape[1], 1.0)
    stderr = np.sqrt(np.outer(variance, np.clip(np.diag(inverse), 0.0, None)))
    return LocalModel(coef.T, stderr, y_mean - z_mean @ coef)


def object_regions(weights: np.ndarray, stderr: np.ndarray, adjacent: np.ndarray, seed_fraction: float,
                   grow_fraction: float, seed_noise: float = SEED_NOISE, grow_noise: float = GROW_NOISE,
                   seed_peer: float = SEED_PEER) -> list[np.ndarray]:
    """Connected groups of clearly positive superpixels of one label → list of int (K,) index arrays.

    weights, stderr: float (S,); adjacent: bool (S, S). Seeds: weight >= `seed_fraction` x the top weight and
    >= `seed_noise` standard errors, and, once one such seed exists, any weight >= `seed_peer` x the top weight
    (the second of two cats is as telling as the first even where the fit is noisier); members: seeds and
    superpixels >= `grow_fraction` x the top weight and >= `grow_noise` standard errors. A group of touching
    members is kept if it holds a seed.
    """
    top = float(weights.max()) if weights.size else 0.0
    if top <= 0:
        return []
    seed = (weights >= seed_fraction * top) & (weights >= seed_noise * stderr)
    if seed.any():
        seed |= weights >= seed_peer * top
    member = seed | ((weights >= grow_fraction * top) & (weights >= grow_noise * stderr))
    index = np.nonzero(member)[0]
    if index.size == 0:
        return []
    _, group = csgraph.connected_components(adjacent[np.ix_(index, index)], directed=False)
    return [index[group == g] for g in np.unique(group) if seed[index[group == g]].any()]


def split_at_valleys(weights: np.ndarray, region: np.ndarray, adjacent: np.ndarray, seed_level: float,
                     valley: float = VALLEY) -> list[np.ndarray]:
    """One region → its objects: a watershed on the weights that keeps two peaks apart when both are
    >= `seed_level` and the best path between them never rises above `valley` x the lower peak.

    weights: float (S,) of the label; region: int (K,) superpixel indices; adjacent: bool (S, S).
    Returns int index arrays covering `region`.
    """
    parent: dict[int, int] = {}
    peak: dict[int, float] = {}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in sorted(region.tolist(), key=lambda k: -weights[k]):  # flood from the strongest superpixel down
        basins = sorted({root(k) for k in np.nonzero(adjacent[i])[0].tolist() if k in parent}, key=lambda r: -peak[r])
        if not basins:
            parent[i], peak[i] = i, float(weights[i])
            continue
        parent[i] = basins[0]
        for other in basins[1:]:
            if peak[other] < seed_level or weights[i] >= valley * peak[other]:
                parent[other] = basins[0]
    pieces: dict[int, list[int]] = {}
    for i in region.tolist():
        pieces.setdefault(root(i), []).append(i)
    return [np.array(sorted(piece)) for piece in pieces.values()]


def superpixel_extents(segments: np.ndarray) -> np.ndarray:
    """int (S, 4): each superpixel's x_min, y_min, x_max + 1, y_max + 1 in the int (h, w) `segments` map."""
    n = int(segments.max()) + 1
    ys, xs = (a.ravel() for a in np.indices(segments.shape))
    flat = segments.ravel()
    extents = np.array([[segments.shape[1], segments.shape[0], 0, 0]] * n, np.int64)
    np.minimum.at(extents[:, 0], flat, xs)
    np.minimum.at(extents[:, 1], flat, ys)
    np.maximum.at(extents[:, 2], flat, xs + 1)
    np.maximum.at(extents[:, 3], flat, ys + 1)
    return extents


def region_box(extents: np.ndarray, region: np.ndarray, image_size: tuple[int, int], map_size: tuple[int, int]
               ) -> np.ndarray:
    """float32 (4,) xyxy, in pixels of an image of (width, height) `image_size`, of the superpixels `region`
    whose int (S, 4) `superpixel_extents` are given on a superpixel map of (width, height) `map_size`."""
    sx, sy = image_size[0] / map_size[0], image_size[1] / map_size[1]
    part = extents[region]
    return np.array([part[:, 0].min() * sx, part[:, 1].min() * sy, part[:, 2].max() * sx, part[:, 3].max() * sy],
                    np.float32)


def region_fill(segments: np.ndarray, region: np.ndarray, extents: np.ndarray) -> float:
    """The fraction, in [0, 1], of the region's bounding box (on the int (h, w) `segments` map) that its own
    superpixels cover: low for two objects or an object and a stray patch boxed together."""
    part = extents[region]
    x0, y0, x1, y1 = part[:, 0].min(), part[:, 1].min(), part[:, 2].max(), part[:, 3].max()
    return float(np.isin(segments[y0:y1, x0:x1], region).mean())


def contained_fraction(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """float (K,): the fraction of xyxy `box`'s area that lies inside each of float (K, 4) xyxy `others`."""
    lt = np.maximum(box[None, :2], others[:, :2])
    rb = np.minimum(box[None, 2:], others[:, 2:])
    inside = np.prod(np.clip(rb - lt, 0.0, None), axis=1)
    return inside / max(float(np.prod(box[2:] - box[:2])), 1e-12)


def extend_by_colour(regions: list[np.ndarray], weights: np.ndarray, colours: np.ndarray, adjacent: np.ndarray,
                     min_weight: float, core_weight: float, max_distance: float = EXTEND_COLOUR) -> list[np.ndarray]:
    """Regions of one big or clear object each → the same grown, flood-fill style, over touching superpixels not
    yet taken whose weight is >= `min_weight` and whose CIELAB colour (float (S, 3) `colours`) is within
    `max_distance` of the colour of one of the region's core superpixels (weight >= `core_weight`): a cat's other
    cheek, where LIME found the eyes and one cheek telling; not the background a weak member touches.
    """
    taken = np.zeros(len(weights), bool)
    for region in regions:
        taken[region] = True
    grown = []
    for region in regions:
        core = colours[region[weights[region] >= core_weight]]
        member, frontier = np.zeros(len(weights), bool), list(region)
        member[region] = True
        while frontier and len(core):
            i = frontier.pop()
            for k in np.nonzero(adjacent[i] & ~taken)[0]:
                if weights[k] >= min_weight and np.linalg.norm(core - colours[k], axis=1).min() <= max_distance:
                    member[k] = taken[k] = True
                    frontier.append(k)
        grown.append(np.nonzero(member)[0])
    return grown


def merge_overlapping(regions: list[np.ndarray], boxes: list[np.ndarray],
                      overlap: float = MERGE_OVERLAP) -> list[np.ndarray]:
    """Regions of one label (int index arrays) and their float (4,) xyxy boxes → the regions with every two whose
    boxes overlap by >= `overlap` of the smaller box's area merged (repeated until no such pair is left)."""
    regions, boxes = list(regions), [np.asarray(b, np.float64) for b in boxes]
    changed = True
    while changed:
        changed = False
        for a in range(len(regions)):
            for b in range(a + 1, len(regions)):
                small, large = sorted((boxes[a], boxes[b]), key=lambda box: np.prod(box[2:] - box[:2]))
                if contained_fraction(small, large[None])[0] >= overlap:
                    regions[a] = np.union1d(regions[a], regions.pop(b))
                    lower, upper = boxes.pop(b), boxes[a]
                    boxes[a] = np.concatenate([np.minimum(lower[:2], upper[:2]), np.maximum(lower[2:], upper[2:])])
                    changed = True
                    break
            if changed:
                break
    return regions


def label_explained(expl: Explanation, label: int, superpixels: np.ndarray, residual: float = RESIDUAL) -> bool:
    """Whether the objects' `superpixels` (int indices) account for `label`: its mean probability over the
    perturbed copies that hide them (<= `HIDDEN_FRACTION` on) is under `residual` x its mean over the copies that
    show them (>= `SHOWN_FRACTION` on). A saturated label whose most telling part was found (a cat's eye) is not
    yet explained: the rest of the cat still carries it."""
    shown_fraction = expl.samples[:, superpixels].mean(axis=1)
    hidden, shown = shown_fraction <= HIDDEN_FRACTION, shown_fraction >= SHOWN_FRACTION
    if not hidden.any():
        return True
    p = expl.sample_probabilities[:, label]
    return float(p[hidden].mean()) < residual * float(p[shown].mean())


def region_evidence(expl: Explanation, label: int, region: np.ndarray, box: np.ndarray) -> float:
    """The probability of `label` in the best view showing the object: the whole image; every window holding
    >= `WINDOW_CONTAIN` of `box`; the mean over perturbed copies with >= `SHOWN_FRACTION` of `region` on
    (the original, row 0, always among them)."""
    views = [float(expl.probabilities[label])]
    if len(expl.windows):
        holds = contained_fraction(box, expl.windows) >= WINDOW_CONTAIN
        views += expl.window_probabilities[holds, label].tolist()
    shown = expl.samples[:, region].mean(axis=1) >= SHOWN_FRACTION
    views.append(float(expl.sample_probabilities[shown, label].mean()))
    return max(views)


def label_regions(expl: Explanation, label: int, weights: np.ndarray, stderr: np.ndarray, adjacent: np.ndarray,
                  seed_fraction: float, grow_fraction: float, min_score: float) -> list[np.ndarray]:
    """The objects of one label as int superpixel index arrays (before `merge_overlapping`).

    weights, stderr: float (S,) of the label's `lime_fit`; adjacent: bool (S, S). A label the whole image is
    sure of (>= `DOMINANT`) grows less strictly (`RELAX_STEPS`) until `label_explained`, and its objects extend
    over their own colour; a label the whole image shows (>= `min_score`) whose weights are all within their
    noise (too few samples) still gets the groups of its strongest superpixels.
    """
    top = max(float(weights.max()), 0.0)
    dominant = expl.probabilities[label] >= DOMINANT
    for fraction, noise in RELAX_STEPS if dominant else RELAX_STEPS[:1]:
        grown = object_regions(weights, stderr, adjacent, seed_fraction, fraction * grow_fraction, SEED_NOISE,
                               noise * GROW_NOISE, SEED_PEER)
        if not grown or label_explained(expl, label, np.concatenate(grown), RESIDUAL):
            break
    if not grown and expl.probabilities[label] >= min_score:
        grown = object_regions(weights, stderr, adjacent, seed_fraction, grow_fraction, 0.0, 0.0)
    regions = [piece for region in grown
               for piece in split_at_valleys(weights, region, adjacent, seed_fraction * top, VALLEY)]
    if dominant:
        regions = extend_by_colour(regions, weights, expl.colours, adjacent, EXTEND_WEIGHT * top,
                                   seed_fraction * top, EXTEND_COLOUR)
    return regions


def find_objects(expl: Explanation, image_size: tuple[int, int], seed_fraction: float, grow_fraction: float,
                 max_superpixels: int, min_score: float) -> list[ObjectRegion]:
    """Every object of every label group of `expl` with evidence >= `min_score`, highest score first.

    image_size: (width, height) of the image in pixels. An object keeps at most `max_superpixels` superpixels
    (its strongest) for its box and mask.
    """
    segments = expl.segments
    map_size = (segments.shape[1], segments.shape[0])
    adjacent, extents = superpixel_adjacency(segments), superpixel_extents(segments)
    penalty = smoothing_penalty(adjacent, expl.colours, SMOOTHING, COLOUR_SCALE)
    model = lime_fit(expl.samples, expl.sample_log_odds, penalty, LOGIT_BOUND)
    found = []
    for j, (weights, stderr) in enumerate(zip(model.weights, model.stderr)):
        regions = label_regions(expl, j, weights, stderr, adjacent, seed_fraction, grow_fraction, min_score)
        boxes = [region_box(extents, region, image_size, map_size) for region in regions]
        for region in merge_overlapping(regions, boxes, MERGE_OVERLAP):
            region = np.sort(region[np.argsort(-weights[region], kind="stable")[:max_superpixels]])
            box = region_box(extents, region, image_size, map_size)
            evidence = region_evidence(expl, j, region, box)
            if evidence >= min_score:
                found.append(ObjectRegion(j, region, box, evidence * region_fill(segments, region, extents)))
    return sorted(found, key=lambda o: -o.score)
