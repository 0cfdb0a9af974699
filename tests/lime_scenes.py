"""Real photos and composites of them with honest ground-truth boxes, for LIME tests and `bench/lime_multi.py`.

Objects are crops of real photos (skimage.data, scikit-learn's sample images, matplotlib's sample photo) chosen
so that the object fills its crop: the crop's border is the object's extent (read off the photos), so a pasted
crop's rectangle is its ground-truth box. Each was checked on the real EfficientNet-Lite0 (ImageNet) alone:

| object | crop of | rows, cols | top classes of the crop alone |
| --- | --- | --- | --- |
| cat | skimage `chelsea` | 0:300, 25:405 (head, ear to ear, chin off the photo) | Egyptian cat 0.74, tabby 0.11, tiger cat 0.10 |
| cup | skimage `coffee` | 15:390, 75:480 (cup and saucer) | espresso 0.81, cup 0.11, coffee mug 0.02 |
| motorcycle | skimage `motorcycle_left.png` | 20:455, 90:690 (mirror tip to tyres, fender to front tyre) | moped 0.38, motor scooter 0.27 |
| tripod | skimage `camera` | 140:510, 225:410 (camcorder top to the legs' feet) | tripod 0.74 |

Labels of the project: cat, cup, motorcycle (classes moped, motor scooter), tripod. Photos of objects whose
labels are not in the config (no box expected): Grace Hopper (military uniform), the astronaut, the rocket on
its pad (missile), china.jpg (a palace, bell cote), flower.jpg (a dahlia), the Hubble deep field.
Backgrounds: grass, gravel, brick (grey textures), china.jpg, flower.jpg, the moon, the Hubble deep field.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import cv2
import numpy as np

LABELS = ("cat", "cup", "motorcycle", "tripod")
CLASS_NAMES = {"motorcycle": ("moped", "motor scooter")}


def _rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return np.array(image[..., :3])  # a writable copy


def photo(name: str) -> np.ndarray:
    """uint8 (H, W, 3) real photo by name (skimage.data, scikit-learn sample images, matplotlib sample data)."""
    import skimage
    from skimage import data, io

    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return _rgb(load_sample_image(f"{name}.jpg"))
    if name == "grace_hopper":
        import matplotlib.cbook

        return _rgb(io.imread(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    if name == "motorcycle_left":
        return _rgb(io.imread(os.path.join(os.path.dirname(skimage.__file__), "data", "motorcycle_left.png")))
    return _rgb(getattr(data, name)())


# object name → (photo, (row0, row1, col0, col1) crop the object fills, label or None if not in the config)
OBJECTS = {
    "cat": ("chelsea", (0, 300, 25, 405), "cat"),
    "cup": ("coffee", (15, 390, 75, 480), "cup"),
    "motorcycle": ("motorcycle_left", (20, 455, 90, 690), "motorcycle"),
    "tripod": ("camera", (140, 510, 225, 410), "tripod"),
}
# whole photos with their labelled object's box (x0, y0, x1, y1)
SINGLE_PHOTOS = {
    "chelsea": ("cat", (30, 0, 400, 300)),
    "coffee": ("cup", (75, 15, 480, 390)),
    "motorcycle_left": ("motorcycle", (90, 20, 690, 455)),
    "camera": ("tripod", (225, 140, 410, 510)),
}
NEGATIVE_PHOTOS = ("grace_hopper", "astronaut", "rocket", "china", "flower", "hubble_deep_field")
BACKGROUNDS = ("grass", "gravel", "brick", "china", "flower", "moon", "hubble_deep_field")
CANVASES = ((800, 600), (1000, 700), (900, 900), (1200, 800), (700, 700))


@dataclass
class Scene:
    """An image and its ground truth: float32 (K, 4) xyxy pixel boxes and their K labels."""

    name: str
    image: np.ndarray
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: tuple[str, ...] = ()


def crop(name: str) -> tuple[np.ndarray, str]:
    source, (r0, r1, c0, c1), label = OBJECTS[name]
    return photo(source)[r0:r1, c0:c1], label


def background(name: str, size: tuple[int, int]) -> np.ndarray:
    """A real photo scaled to cover (width, height) and centre-cropped to it."""
    width, height = size
    image = photo(name)
    scale = max(width / image.shape[1], height / image.shape[0])
    image = cv2.resize(image, (max(width, round(image.shape[1] * scale)), max(height, round(image.shape[0] * scale))),
                       interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    y0, x0 = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
    return np.ascontiguousarray(image[y0:y0 + height, x0:x0 + width])


def composite(objects: list[str], rng: np.random.Generator, area: tuple[float, float], name: str = "",
              max_tries: int = 5000) -> Scene:
    """Objects pasted without overlap on a random real background; each object's area a random fraction in
    `area` of the canvas (random mirror). Ground truth = the pasted crops' rectangles.

    A layout with no room left for the next object is drawn again from the start.
    """
    width, height = CANVASES[rng.integers(len(CANVASES))]
    canvas = background(BACKGROUNDS[rng.integers(len(BACKGROUNDS))], (width, height))
    images = [crop(obj) for obj in objects]
    images = [(image[:, ::-1] if rng.random() < 0.5 else image, label) for image, label in images]
    gap = 0.02 * min(width, height)
    for _ in range(max_tries):
        boxes = []
        for image, _label in images:
            scale = np.sqrt(rng.uniform(*area) * width * height / (image.shape[0] * image.shape[1]))
            w, h = round(image.shape[1] * scale), round(image.shape[0] * scale)
            if w >= width or h >= height:
                break
            x0, y0 = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
            if not all(x0 >= b[2] + gap or x0 + w + gap <= b[0] or y0 >= b[3] + gap or y0 + h + gap <= b[1]
                       for b in boxes):
                break
            boxes.append((x0, y0, x0 + w, y0 + h))
        if len(boxes) == len(images):
            break
    else:
        raise RuntimeError(f"no room for {objects} in {name}")
    for (image, _label), (x0, y0, x1, y1) in zip(images, boxes):
        canvas[y0:y1, x0:x1] = cv2.resize(np.ascontiguousarray(image), (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    return Scene(name or "+".join(objects), canvas, np.array(boxes, np.float32).reshape(-1, 4),
                 tuple(label for _, label in images))


def two_object_scenes(count: int, seed: int = 0) -> list[Scene]:
    """`count` composites of two labelled objects, cycling through every pair (same label included)."""
    names = list(OBJECTS)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i:]]
    rng = np.random.default_rng(seed)
    return [composite(list(pairs[i % len(pairs)]), rng, (0.08, 0.3), f"2obj-{i}") for i in range(count)]


def many_object_scenes(count: int, seed: int = 1) -> list[Scene]:
    """`count` composites of three or four labelled objects (labels may repeat)."""
    names = list(OBJECTS)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        chosen = [names[k] for k in rng.choice(len(names), size=3 + i % 2, replace=True)]
        out.append(composite(chosen, rng, (0.05, 0.14), f"{len(chosen)}obj-{i}"))
    return out


def single_object_scenes(seed: int = 2) -> list[Scene]:
    """The four whole photos, then each object alone on a random background."""
    out = [Scene(name, photo(name), np.array([box], np.float32), (label,))
           for name, (label, box) in SINGLE_PHOTOS.items()]
    rng = np.random.default_rng(seed)
    out += [composite([obj], rng, (0.15, 0.4), f"1obj-{obj}") for obj in OBJECTS]
    return out


def negative_scenes() -> list[Scene]:
    """Photos of objects whose labels are not in the config: every box on them is a false positive."""
    return [Scene(name, photo(name)) for name in NEGATIVE_PHOTOS]
