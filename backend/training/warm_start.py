"""Warm start: a new detector version begins from the active version's weights instead of ImageNet alone.

Every tensor whose name and shape agree is copied. The box predictor's rows are per class (row 0 = background in
`cls_score`, rows 4c..4c+3 = class c in `bbox_pred`), so they are copied by label value: a label the active
version knew keeps its rows, a new label keeps its fresh random initialisation, a label dropped from the config
loses its rows.
"""

from __future__ import annotations

import torch
from torchvision.models.detection import FasterRCNN

CLS = "roi_heads.box_predictor.cls_score"
BOX = "roi_heads.box_predictor.bbox_pred"


def class_rows(old_classes: list[str], new_classes: list[str]) -> list[tuple[int, int]]:
    """(new class index, old class index) pairs in the 1..C numbering (0 = background, always paired)."""
    pairs = [(0, 0)]
    for i, label in enumerate(new_classes, start=1):
        if label in old_classes:
            pairs.append((i, old_classes.index(label) + 1))
    return pairs


@torch.no_grad()
def warm_start(model: FasterRCNN, old_state: dict[str, torch.Tensor], old_classes: list[str],
               new_classes: list[str], skip: tuple[str, ...] = ()) -> dict:
    """Copy `old_state` (a checkpoint's state dict, class i+1 = old_classes[i]) into `model` (class i+1 =
    new_classes[i]) in place, but for names starting with one of `skip` (e.g. an FPN whose levels differ: same
    shapes, other strides). Returns {"copied": tensors copied whole, "skipped": names whose shapes differ,
    "classes_kept": labels whose predictor rows were carried over}."""
    state = model.state_dict()
    copied, skipped = 0, []
    for name, tensor in old_state.items():
        if name.startswith((CLS, BOX, *skip)) or name not in state:
            continue
        if state[name].shape != tensor.shape:
            skipped.append(name)
            continue
        state[name].copy_(tensor)
        copied += 1
    pairs = class_rows(old_classes, new_classes)
    for suffix in ("weight", "bias"):
        cls_new, cls_old = state[f"{CLS}.{suffix}"], old_state.get(f"{CLS}.{suffix}")
        box_new, box_old = state[f"{BOX}.{suffix}"], old_state.get(f"{BOX}.{suffix}")
        if cls_old is None or box_old is None or cls_old.shape[1:] != cls_new.shape[1:]:
            skipped.append(f"{CLS}.{suffix}")
            continue
        for new, old in pairs:
            cls_new[new] = cls_old[old]
            box_new[4 * new:4 * new + 4] = box_old[4 * old:4 * old + 4]
    return {"copied": copied, "skipped": skipped, "classes_kept": [new_classes[i - 1] for i, _ in pairs[1:]]}
