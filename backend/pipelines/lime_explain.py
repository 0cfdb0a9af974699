"""LIME for images, vectorised on the device.

Same estimator as the `lime` package's `LimeImageExplainer` (random on/off superpixel masks with the
first sample all-on, hidden superpixels filled with their mean colour, cosine-distance kernel of width
0.25, weighted ridge with alpha=1 and an intercept over all superpixels), but every perturbation is built
and classified in large batches on the device at the classifier's input size, and the ridge fits for
all labels are one batched solve.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from skimage.segmentation import slic

from backend.adapters.classifier import ImageClassifier

KERNEL_WIDTH = 0.25
RIDGE_ALPHA = 1.0


def superpixels(image: np.ndarray, n_segments: int, max_side: int = 256) -> np.ndarray:
    """SLIC superpixels of uint8 (H, W, 3) `image` at reduced size → int32 (h, w) labels 0..S-1.

    h, w = the image scaled so its longer side is at most `max_side`.
    """
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = image
    if scale < 1.0:
        tensor = torch.from_numpy(image).permute(2, 0, 1)[None].float()
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        small = F.interpolate(tensor, size=size, mode="bilinear", antialias=True, align_corners=False)
        small = small[0].permute(1, 2, 0).clamp(0, 255).byte().numpy()
    segments = slic(small, n_segments=n_segments, compactness=10, start_label=0, channel_axis=-1)
    _, segments = np.unique(segments, return_inverse=True)  # make labels dense 0..S-1
    return segments.reshape(small.shape[:2]).astype(np.int32)


@dataclass(frozen=True)
class Explanation:
    """LIME result for one image.

    weights: float32 (L, S) ridge coefficients per label group and superpixel.
    probabilities: float32 (L,) summed class probability of each label group on the original image.
    segments: int32 (h, w) superpixel labels the weights refer to.
    """

    weights: np.ndarray
    probabilities: np.ndarray
    segments: np.ndarray


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


def ridge_weights(z: torch.Tensor, targets: torch.Tensor, alpha: float = RIDGE_ALPHA,
                  kernel_width: float = KERNEL_WIDTH) -> torch.Tensor:
    """Weighted ridge of `targets` on `z`, as `lime` fits it.

    z: float (N, S) masks with row 0 the original; targets: float (N, L). Returns float64 (L, S) coefficients.
    Sample weights: sqrt(exp(-d^2 / width^2)) with d the cosine distance of each row to row 0.
    """
    z = z.double()
    y = targets.double()
    ref = z[0:1]
    cos = (z @ ref.T).squeeze(1) / (z.norm(dim=1) * ref.norm()).clamp(min=1e-12)
    distance = 1.0 - cos
    w = torch.sqrt(torch.exp(-(distance ** 2) / kernel_width ** 2))
    w_sum = w.sum()
    z_mean = (w[:, None] * z).sum(0) / w_sum
    y_mean = (w[:, None] * y).sum(0) / w_sum
    zc = z - z_mean
    yc = y - y_mean
    gram = zc.T @ (w[:, None] * zc) + alpha * torch.eye(z.shape[1], dtype=z.dtype, device=z.device)
    rhs = zc.T @ (w[:, None] * yc)
    return torch.linalg.solve(gram, rhs).T


def explain(classifier: ImageClassifier, images: list[np.ndarray], segments: Iterable[np.ndarray],
            groups: list[tuple[int, ...]], num_samples: int, input_size: int, seed: int = 0) -> list[Explanation]:
    """LIME explanations of `len(groups)` label groups for each uint8 (H, W, 3) image.

    `segments` yields each image's int32 (h, w) superpixel map (may be computed lazily, in order).

    A label group's target is the summed probability of its classes. Perturbations are built at
    `input_size` x `input_size` (the image and its superpixel map resized), one classifier batch at a time.
    """
    device = classifier.device
    n_classes = len(classifier.class_names)
    membership = torch.zeros(n_classes, len(groups), device=device)
    for j, group in enumerate(groups):
        membership[list(group), j] = 1.0
    out = []
    for image, seg in zip(images, segments):
        tensor = torch.from_numpy(image).to(device).permute(2, 0, 1)[None].float() / 255.0
        tensor = F.interpolate(tensor, size=(input_size, input_size), mode="bilinear", antialias=True,
                               align_corners=False)
        tensor = classifier.normalize(tensor)[0]  # normalise once; perturbations mix normalised colours
        seg_t = torch.from_numpy(seg).to(device)[None, None].float()
        seg_t = F.interpolate(seg_t, size=(input_size, input_size), mode="nearest")[0, 0].long()
        n_seg = int(seg.max()) + 1
        fudge = mean_colour(tensor.float(), seg_t, n_seg).to(tensor.dtype)
        z = sample_masks(num_samples, n_seg, seed).to(device)
        step = classifier.batch_size
        probs = [classifier.probabilities_normalized(perturb(tensor, fudge, seg_t, z[i:i + step])) @ membership
                 for i in range(0, num_samples, step)]
        targets = torch.cat(probs)
        weights = ridge_weights(z, targets)
        out.append(Explanation(weights.float().cpu().numpy(), targets[0].float().cpu().numpy(), seg))
    return out
