"""Real photos with ground-truth boxes for the routing benchmark's LIME set (bench/routing.py).

Objects are hand-picked crops of scikit-image photos whose edges lie on the object's extent (the object
fills its crop; the crop coordinates were read off the photos on a 50-px grid, about ±5 %), so a pasted crop's
rectangle is an honest ground-truth box. Composites paste 1-3 such crops, randomly mirrored and scaled (longer
side 45-85 % of the canvas' shorter side for one object, 30-55 % for two or three), without overlap (8 px apart
at least), on varied backgrounds: crops of texture photos (brick, grass, gravel, moon, cells, Hubble deep field,
immunohistochemistry, retina), tinted when grey, plain colours, gradients and noise. Single photos (chelsea,
coffee, the stereo motorcycle) carry boxes read off the same grid.

The classifier (ImageNet EfficientNet-Lite0) recognises every object crop alone (label-group probability: cat
0.93, cat face 0.88, cup 0.80, motorcycle 0.50; `python bench/routing_photos.py` prints them); in composites the
whole-image probability of a small or second object can fall below `class_threshold`, and LIME then misses it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from backend.core.ontology import Control, Ontology  # noqa: E402

# label → ImageNet classes (explicit, as a project would name them with predicted_values)
CLASSES = {"cat": ("tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"),
           "cup": ("cup", "coffee mug", "espresso"), "motorcycle": ("moped", "motor scooter")}
ONTOLOGY = Ontology((Control("box", "RectangleLabels", "image", "image", tuple(CLASSES)),), class_names=CLASSES)


def _motorcycle() -> np.ndarray:
    return data.stereo_motorcycle()[0]


# name → (label, photo loader, crop rows y0:y1, columns x0:x1): the object fills the crop
OBJECTS = {
    "cat": ("cat", data.chelsea, (0, 300), (0, 400)),
    "cat face": ("cat", data.chelsea, (40, 290), (60, 380)),
    "cup": ("cup", data.coffee, (15, 300), (168, 425)),
    "motorcycle": ("motorcycle", _motorcycle, (95, 450), (90, 690)),
}

# single photos: (name, loader, [(label, xyxy)])
SINGLES = [
    ("chelsea", data.chelsea, [("cat", (0, 0, 451, 300))]),
    ("coffee", data.coffee, [("cup", (170, 15, 412, 300))]),
    ("motorcycle", _motorcycle, [("motorcycle", (90, 95, 690, 450))]),
]

CANVASES = [(640, 480), (800, 600), (512, 512), (720, 480), (600, 800), (560, 420)]


@dataclass(frozen=True)
class Photo:
    """One task: uint8 (H, W, 3) image; boxes float32 (N, 4) xyxy pixels; labels N label values."""

    name: str
    image: np.ndarray
    boxes: np.ndarray
    labels: tuple[str, ...]


def _textures() -> list[np.ndarray]:
    return [data.brick(), data.grass(), data.gravel(), data.moon(), data.cell(), data.hubble_deep_field(),
            data.immunohistochemistry(), data.retina()]


def background(rng: np.random.Generator, width: int, height: int, textures: list[np.ndarray]) -> np.ndarray:
    """uint8 (height, width, 3): a resized texture crop (grey ones tinted), a plain colour, a gradient or noise."""
    kind = rng.choice(["texture", "texture", "plain", "gradient", "noise"])
    if kind == "texture":
        tex = textures[rng.integers(len(textures))]
        h, w = tex.shape[:2]
        side = int(rng.integers(min(h, w) // 2, min(h, w) + 1))
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        crop = tex[y:y + side, x:x + side]
        if crop.ndim == 2:
            tint = rng.uniform(0.5, 1.0, 3)
            crop = (crop[..., None] * tint).astype(np.uint8)
        return np.array(Image.fromarray(crop[..., :3]).resize((width, height), Image.BILINEAR))
    colour = rng.integers(0, 256, 3)
    if kind == "plain":
        return np.broadcast_to(colour.astype(np.uint8), (height, width, 3)).copy()
    if kind == "gradient":
        other = rng.integers(0, 256, 3)
        t = np.linspace(0, 1, width)[None, :, None] if rng.random() < 0.5 else np.linspace(0, 1, height)[:, None, None]
        return np.broadcast_to(colour * (1 - t) + other * t, (height, width, 3)).astype(np.uint8)
    return rng.normal(colour, 40, (height, width, 3)).clip(0, 255).astype(np.uint8)


def composite(rng: np.random.Generator, name: str, crops: dict[str, tuple[str, np.ndarray]],
              textures: list[np.ndarray]) -> Photo:
    """1-3 object crops pasted without overlap on a background; the pasted rectangles are the boxes."""
    width, height = CANVASES[rng.integers(len(CANVASES))]
    canvas = background(rng, width, height, textures)
    n = int(rng.choice([1, 2, 3], p=[0.45, 0.4, 0.15]))
    boxes, labels = [], []
    for _ in range(n):
        key = list(crops)[rng.integers(len(crops))]
        label, crop = crops[key]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        for _attempt in range(100):
            longer = (rng.uniform(0.45, 0.85) if n == 1 else rng.uniform(0.3, 0.55)) * min(width, height)
            scale = longer / max(crop.shape[:2])
            w, h = max(8, int(round(crop.shape[1] * scale))), max(8, int(round(crop.shape[0] * scale)))
            x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            box = np.array([x, y, x + w, y + h], np.float32)
            if all(_gap(box, other) >= 8 for other in boxes):
                break
        else:
            continue
        pasted = Image.fromarray(np.ascontiguousarray(crop)).resize((w, h), Image.BILINEAR)
        canvas[y:y + h, x:x + w] = np.asarray(pasted)
        boxes.append(box)
        labels.append(label)
    return Photo(name, canvas, np.array(boxes, np.float32).reshape(-1, 4), tuple(labels))


def _gap(a: np.ndarray, b: np.ndarray) -> float:
    """Pixels between two boxes (negative when they overlap)."""
    return float(max(b[0] - a[2], a[0] - b[2], b[1] - a[3], a[1] - b[3]))


def photo_set(n_composites: int = 45, seed: int = 0) -> list[Photo]:
    """The single photos, then `n_composites` composites (deterministic for a seed)."""
    crops = {name: (label, load()[y0:y1, x0:x1]) for name, (label, load, (y0, y1), (x0, x1)) in OBJECTS.items()}
    singles = [Photo(name, load(), np.array([b for _, b in regions], np.float32), tuple(l for l, _ in regions))
               for name, load, regions in SINGLES]
    rng = np.random.default_rng(seed)
    textures = _textures()
    return singles + [composite(rng, f"composite {i}", crops, textures) for i in range(n_composites)]


def check_classifier() -> None:
    """Print the classifier's top classes and label-group probabilities for every object crop."""
    import torch
    import torch.nn.functional as F

    from backend.adapters.classifier import build_classifier
    from backend.pipelines.label_mapping import class_groups

    classifier = build_classifier("efficientnet-lite0", "cpu")
    groups = class_groups(ONTOLOGY.labels, classifier.class_names, ONTOLOGY.class_names)
    for name, (label, load, (y0, y1), (x0, x1)) in OBJECTS.items():
        crop = np.ascontiguousarray(load()[y0:y1, x0:x1])
        x = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255
        p = classifier.probabilities(F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True))[0]
        top = p.topk(3)
        print(f"{name} ({label}): top {[(classifier.class_names[i], round(float(v), 2)) for v, i in zip(*top)]}; "
              f"label groups {({k: round(float(p[list(g)].sum()), 2) for k, g in groups.items()})}")


if __name__ == "__main__":
    check_classifier()
