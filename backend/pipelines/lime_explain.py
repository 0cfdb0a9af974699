"""LIME for images, vectorised on the device.

Same sampling as the `lime` package's `LimeImageExplainer` (random on/off superpixel masks with the first
sample all-on, hidden superpixels filled with their mean colour), but every perturbation is built and
classified in large batches on the device at the classifier's input size. The local model (LIME's kernel
and ridge) is fitted afterwards from the recorded masks and probabilities (`backend.pipelines.lime_objects`).
A few windows of the image are classified in the same pass, so small objects are seen at a larger scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from skimage.color import rgb2lab
from skimage.segmentation import slic

from backend.adapters.classifier import ImageClassifier

KERNEL_WIDTH = 0.25  # lime's sample kernel: sqrt(exp(-d^2 / width^2)), d = cosine distance to the original
RIDGE_ALPHA = 1.0  # lime's ridge penalty


def superpixels(image: np.ndarray, n_segments: int, max_side: int = 256) -> np.ndarray:
    """SLICO superpixels (SLIC with per-superpixel adaptive compactness) of uint8 (H, W, 3) `image` at reduced
    size → int32 (h, w) labels 0..S-1, about `n_segments` of them.

    h, w = the image scaled so its longer side is at most `max_side`. SLICO keeps about the requested count
    (plain SLIC at compactness 10 merged half of them away) and follows strong edges while staying compact in
    textured areas.
    """
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = image
    if scale < 1.0:
        tensor = torch.from_numpy(image).permute(2, 0, 1)[None].float()
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        small = F.interpolate(tensor, size=size, mode="bilinear", antialias=True, align_corners=False)
        small = small[0].permute(1, 2, 0).clamp(0, 255).byte().numpy()
    segments = slic(small, n_segments=n_segments, compactness=10, start_label=0, channel_axis=-1,
                    slic_zero=True)
    _, segments = np.unique(segments, return_inverse=True)  # make labels dense 0..S-1
    return segments.reshape(small.shape[:2]).astype(np.int32)


@dataclass(frozen=True)
class Explanation:
    """LIME perturbations of one image and what the classifier said about them.

    probabilities: float32 (L,) summed class probability of each label group on the original image.
    segments: int32 (h, w) superpixel labels 0..S-1 the masks refer to.
    samples: bool (N, S) the on/off superpixel masks that were classified; row 0 is all on.
    sample_probabilities: float32 (N, L) summed class probability of each label group on each perturbed
        copy (row 0 equals `probabilities`).
    sample_log_odds: float32 (N, L) log(p / (1 - p)) of the same, computed from the logits (exact where p
        rounds to 0 or 1 in float32, as for a two-class project classifier).
    colours: float32 (S, 3) mean colour of each superpixel, CIELAB (L in 0..100).
    windows: float32 (K, 4) xyxy boxes, in image pixels, of parts of the image classified on their own
        (`window_boxes`); K may be 0.
    window_probabilities: float32 (K, L) summed class probability of each label group in each window.
    """

    probabilities: np.ndarray
    segments: np.ndarray
    samples: np.ndarray
    sample_probabilities: np.ndarray
    sample_log_odds: np.ndarray
    colours: np.ndarray
    windows: np.ndarray
    window_probabilities: np.ndarray


def window_boxes(width: int, height: int, per_side: int) -> np.ndarray:
    """float32 (per_side^2, 4) xyxy windows of half the image's width and height on an even grid (stride
    1 / (2 (per_side - 1)) of the image), corners and centre included; none (0, 4) if `per_side` < 2.

    A small object fills four times more of a window than of the whole image, so the classifier sees it.
    """
    if per_side < 2:
        return np.zeros((0, 4), np.float32)
    steps = np.linspace(0.0, 0.5, per_side)
    boxes = [(x * width, y * height, (x + 0.5) * width, (y + 0.5) * height) for y in steps for x in steps]
    return np.array(boxes, np.float32)


def crop_views(image: torch.Tensor, boxes: np.ndarray, size: int) -> torch.Tensor:
    """float (1, 3, H, W) image, float (K, 4) xyxy pixel boxes → float (K, 3, size, size) resized crops."""
    height, width = image.shape[2:]
    views = []
    for x0, y0, x1, y1 in boxes:
        left, top = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
        right, bottom = min(width, max(left + 1, int(np.ceil(x1)))), min(height, max(top + 1, int(np.ceil(y1))))
        views.append(F.interpolate(image[:, :, top:bottom, left:right], size=(size, size), mode="bilinear",
                                   antialias=True, align_corners=False))
    return torch.cat(views) if views else image.new_zeros((0, 3, size, size))


def superpixel_colours(image: torch.Tensor, segments: torch.Tensor, n_segments: int) -> np.ndarray:
    """float (3, s, s) RGB in [0, 1], long (s, s) labels → float32 (S, 3) CIELAB mean colour of each superpixel."""
    flat = segments.reshape(-1)
    counts = torch.bincount(flat, minlength=n_segments).clamp(min=1).to(torch.float32)
    sums = torch.zeros(3, n_segments, device=image.device, dtype=torch.float32)
    sums.index_add_(1, flat, image.reshape(3, -1).float())
    rgb = (sums / counts).T.clamp(0, 1).cpu().numpy()
    return rgb2lab(rgb[:, None, :])[:, 0, :].astype(np.float32)


def group_scores(logits: torch.Tensor, membership: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float (B, C) logits, float (C, L) 0/1 class-to-group membership → float32 (B, L) summed group
    probabilities and float32 (B, L) group log-odds log(p / (1 - p)), both from log-softmax (no rounding to 0
    or 1). A group holding no class or every class gets log-odds -inf or +inf."""
    log_p = logits.float().log_softmax(dim=-1)[:, None, :]  # (B, 1, C)
    member = membership.T.bool()[None]  # (1, L, C)
    inside = torch.where(member, log_p, -torch.inf).logsumexp(dim=-1)
    outside = torch.where(member, -torch.inf, log_p).logsumexp(dim=-1)
    return inside.exp(), inside - outside


def sample_masks(n_samples: int, n_segments: int, seed: int) -> torch.Tensor:
    """float32 (N, S) on/off masks; row 0 is all on (the original image).

    Drawn exactly as `lime` draws them (`RandomState(seed).randint(0, 2, N * S)`), so with the same
    seed both implementations classify the very same perturbations.
    """
    z = np.random.RandomState(seed).randint(0, 2, n_samples * n_segments).reshape(n_samples, n_segments)
    z = torch.from_numpy(z).float()
    z[0] = 1.0
    return z


def perturb(image: torch.Tensor, fudge: torch.Tensor, segments: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Perturbed copies of one image.

    image, fudge: (3, s, s) the image and its per-superpixel mean colour; segments: long (s, s) labels
    0..S-1; z: (B, S) on/off masks. Returns (B, 3, s, s): superpixel kept where z is 1, else its mean colour.
    """
    keep = z.bool()[:, segments].unsqueeze(1)  # (B, 1, s, s)
    return torch.where(keep, image.unsqueeze(0), fudge.unsqueeze(0))


def mean_colour(image: torch.Tensor, segments: torch.Tensor, n_segments: int) -> torch.Tensor:
    """(3, s, s) image → (3, s, s) where each pixel holds its superpixel's mean colour (lime's `hide_color=None`)."""
    flat = segments.reshape(-1)
    counts = torch.bincount(flat, minlength=n_segments).clamp(min=1).to(image.dtype)
    sums = torch.zeros(3, n_segments, device=image.device, dtype=image.dtype)
    sums.index_add_(1, flat, image.reshape(3, -1))
    return (sums / counts)[:, segments]


def explain(classifier: ImageClassifier, images: list[np.ndarray], segments: Iterable[np.ndarray],
            groups: list[tuple[int, ...]], num_samples: int, input_size: int, seed: int = 0,
            windows_per_side: int = 1) -> list[Explanation]:
    """LIME perturbations of each uint8 (H, W, 3) image, classified, for `len(groups)` label groups.

    `segments` yields each image's int32 (h, w) superpixel map (may be computed lazily, in order).

    A label group's target is the summed probability of its classes. Perturbations are built at
    `input_size` x `input_size` (the image and its superpixel map resized), one classifier batch at a time.
    The `window_boxes(W, H, windows_per_side)` windows of the image are classified as well (windows_per_side^2
    more images, none for 1).
    """
    device = classifier.device
    n_classes = len(classifier.class_names)
    membership = torch.zeros(n_classes, len(groups), device=device)
    for j, group in enumerate(groups):
        membership[list(group), j] = 1.0
    out = []
    for image, seg in zip(images, segments):
        full = torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(2, 0, 1)[None].float() / 255.0
        rgb = F.interpolate(full, size=(input_size, input_size), mode="bilinear", antialias=True,
                            align_corners=False)
        tensor = classifier.normalize(rgb)[0]  # normalise once; perturbations mix normalised colours
        seg_t = torch.from_numpy(seg).to(device)[None, None].float()
        seg_t = F.interpolate(seg_t, size=(input_size, input_size), mode="nearest")[0, 0].long()
        n_seg = int(seg.max()) + 1
        fudge = mean_colour(tensor.float(), seg_t, n_seg).to(tensor.dtype)
        z = sample_masks(num_samples, n_seg, seed).to(device)
        step = classifier.batch_size
        scores = [group_scores(classifier.logits_normalized(perturb(tensor, fudge, seg_t, z[i:i + step])), membership)
                  for i in range(0, num_samples, step)]
        probs = torch.cat([p for p, _ in scores]).cpu().numpy()
        log_odds = torch.cat([o for _, o in scores]).cpu().numpy()
        boxes = window_boxes(image.shape[1], image.shape[0], windows_per_side)
        window_probs = classifier.probabilities(crop_views(full, boxes, input_size)) @ membership
        out.append(Explanation(probs[0], seg, z.bool().cpu().numpy(), probs, log_odds,
                               superpixel_colours(rgb[0], seg_t, n_seg), boxes,
                               window_probs.float().cpu().numpy()))
    return out
