"""LIME for images, vectorised on the device.

Same estimator as the `lime` package's `LimeImageExplainer` (random on/off superpixel masks with the
first sample all-on, hidden superpixels filled with their mean colour, cosine-distance kernel of width
0.25, weighted ridge with alpha=1 and an intercept over all superpixels), but every perturbation is built
and classified in large batches on the device at the classifier's input size, and the ridge fits for
all labels are one batched solve.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def sample_masks(n_samples: int, n_segments: int, generator: torch.Generator) -> torch.Tensor:
    """float32 (N, S) on/off masks; row 0 is all on (the original image), as in `lime`."""
    z = torch.randint(0, 2, (n_samples, n_segments), generator=generator).float()
    z[0] = 1.0
    return z


def perturb(image: torch.Tensor, segments: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Perturbed copies of one image.

    image: float (3, s, s) in [0, 1]; segments: long (s, s) labels 0..S-1; z: (B, S) masks.
    Returns float (B, 3, s, s): each superpixel kept where z is 1, else filled with its mean colour.
    """
    n_seg = z.shape[1]
    flat = segments.reshape(-1)
    counts = torch.bincount(flat, minlength=n_seg).clamp(min=1).to(image.dtype)
    sums = torch.zeros(3, n_seg, device=image.device, dtype=image.dtype)
    sums.index_add_(1, flat, image.reshape(3, -1))
    fudge = (sums / counts)[:, segments]  # (3, s, s) mean colour per superpixel
    keep = z.to(image.dtype)[:, segments].unsqueeze(1)  # (B, 1, s, s)
    return keep * image.unsqueeze(0) + (1 - keep) * fudge.unsqueeze(0)


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


def explain(classifier: ImageClassifier, images: list[np.ndarray], segments: list[np.ndarray],
            groups: list[tuple[int, ...]], num_samples: int, input_size: int, seed: int = 0,
            batch_size: int = 512) -> list[Explanation]:
    """LIME explanations of `len(groups)` label groups for each uint8 (H, W, 3) image.

    A label group's target is the summed probability of its classes. Perturbations are built at
    `input_size` x `input_size` (the image and its superpixel map resized), `batch_size` at a time.
    """
    device = classifier.device
    n_classes = len(classifier.class_names)
    membership = torch.zeros(n_classes, len(groups), device=device)
    for j, group in enumerate(groups):
        membership[list(group), j] = 1.0
    generator = torch.Generator().manual_seed(seed)
    out = []
    for image, seg in zip(images, segments):
        tensor = torch.from_numpy(image).to(device).permute(2, 0, 1)[None].float() / 255.0
        tensor = F.interpolate(tensor, size=(input_size, input_size), mode="bilinear", antialias=True,
                               align_corners=False)[0]
        seg_t = torch.from_numpy(seg).to(device)[None, None].float()
        seg_t = F.interpolate(seg_t, size=(input_size, input_size), mode="nearest")[0, 0].long()
        n_seg = int(seg.max()) + 1
        z = sample_masks(num_samples, n_seg, generator).to(device)
        probs = []
        for start in range(0, num_samples, batch_size):
            batch = perturb(tensor, seg_t, z[start:start + batch_size])
            probs.append(classifier.probabilities(batch) @ membership)
        targets = torch.cat(probs)
        weights = ridge_weights(z, targets)
        out.append(Explanation(weights.float().cpu().numpy(), targets[0].float().cpu().numpy(), seg))
    return out
