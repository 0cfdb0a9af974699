"""Map Label Studio label values to classifier classes (by explicit list, synonym, or name)."""

from __future__ import annotations

import re

# ImageNet-1k index ranges / names for common labels whose classes do not contain the word itself.
IMAGENET_SYNONYMS: dict[str, tuple] = {
    "cat": (range(281, 286),),
    "kitten": (range(281, 286),),
    "dog": (range(151, 269),),
    "puppy": (range(151, 269),),
    "bird": (range(7, 25), range(80, 101), range(127, 147)),
    "fish": (range(0, 7), range(389, 398)),
    "snake": (range(52, 69),),
    "spider": (range(72, 78),),
    "monkey": (range(369, 385),),
    "bear": (range(294, 298),),
    "apple": ("Granny Smith",),
    "cup": ("cup", "coffee mug", "espresso"),
    "mug": ("coffee mug",),
    "coffee": ("espresso", "coffee mug", "cup"),
    "car": ("sports car", "convertible", "cab", "jeep", "limousine", "minivan", "Model T", "racer",
            "beach wagon", "police van", "ambulance"),
    "truck": ("fire engine", "garbage truck", "pickup", "tow truck", "trailer truck", "moving van"),
    "bus": ("school bus", "trolleybus", "minibus"),
    "bicycle": ("mountain bike", "bicycle-built-for-two", "tricycle"),
    "bike": ("mountain bike", "bicycle-built-for-two", "motor scooter", "moped"),
    "boat": ("canoe", "speedboat", "lifeboat", "fireboat", "gondola", "yawl", "catamaran", "trimaran",
             "schooner", "container ship", "liner", "paddlewheel"),
    "plane": ("airliner", "warplane"),
    "airplane": ("airliner", "warplane"),
    "flower": ("daisy", "yellow lady's slipper"),
    "sign": ("street sign",),
    "road sign": ("street sign",),
    "traffic light": ("traffic light",),
}


def class_groups(labels: tuple[str, ...], class_names: tuple[str, ...],
                 explicit: dict[str, tuple[str, ...]] | None = None,
                 synonyms: dict[str, tuple] | None = None) -> dict[str, tuple[int, ...]]:
    """label value → indices of classifier classes that count as that label.

    Order of precedence: `explicit` names (exact, case-insensitive), then `synonyms`
    (ImageNet table by default, only for 1000-class ImageNet classifiers), then class names equal
    to the label, then class names one of whose comma-separated names ends with the label as its head noun
    ("tiger cat" and "tabby, tabby cat" are cats; "tree frog, tree-frog" is a frog, never a tree). Labels that match
    no class are left out.
    """
    explicit = explicit or {}
    if synonyms is None:
        synonyms = IMAGENET_SYNONYMS if len(class_names) == 1000 else {}
    lower = [name.lower() for name in class_names]
    index = {name: i for i, name in enumerate(lower)}
    groups: dict[str, tuple[int, ...]] = {}
    for label in labels:
        key = label.strip().lower()
        found: list[int] = []
        if label in explicit:
            found = [index[n.lower()] for n in explicit[label] if n.lower() in index]
        elif key in synonyms:
            for part in synonyms[key]:
                found += list(part) if isinstance(part, range) else [index[part.lower()]] if part.lower() in index else []
        elif key in index:
            found = [index[key]]
        else:
            pattern = re.compile(rf"(^|\s){re.escape(key)}s?$")
            found = [i for i, name in enumerate(lower) if any(pattern.search(n.strip()) for n in name.split(","))]
        if found:
            groups[label] = tuple(sorted(set(found)))
    return groups
