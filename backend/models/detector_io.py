"""A trained detector on disk and at work: the `detector.pt` checkpoint ({"format", "spec" (DetectorSpec fields),
"class_names" (label values; class i+1 of the model is class_names[i]), "state_dict", "metrics"}, written
atomically) and prediction, with the dihedral test-time fusion its spec asks for: views of the backbone maps for a
detector trained on such views (a cached frozen prefix, `backend.models.map_views`), else views of the image.

Images are uint8 (H, W, 3); boxes float32 (N, 4) xyxy pixels; scores float32 (N,); labels int64 (N,) in 1..C.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchvision.models.detection import FasterRCNN

from backend.core.files import atomic_path
from backend.models.detector import DetectorSpec, build_detector
from backend.models.map_views import predict_map_views
from backend.models.precision import autocast_device
from backend.models.tta import fuse, soft_nms, unview_boxes, view

FORMAT = "ls-autolabel-detector/1"
CHECKPOINT = "detector.pt"


def save_detector(directory: Path, model, class_names: list[str], metrics: dict) -> Path:
    """Write `detector.pt` (spec, label values, weights, metrics) into `directory`, atomically."""
    checkpoint = {"format": FORMAT, "spec": model.spec.as_dict(), "class_names": list(class_names),
                  "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "metrics": metrics}
    with atomic_path(Path(directory) / CHECKPOINT) as tmp:
        torch.save(checkpoint, tmp)
    return Path(directory) / CHECKPOINT


def load_detector(directory: Path, device: str = "cpu"):
    """(eval-mode model on `device`, class names) from a directory holding `detector.pt`."""
    path = Path(directory) / CHECKPOINT
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or foreign files fail in many ways inside the unpickler
        raise ValueError(f"cannot read detector checkpoint {path}: {exc}") from None
    if checkpoint.get("format") != FORMAT:
        raise ValueError(f"{path} is not a detector checkpoint of format {FORMAT}")
    spec = checkpoint["spec"]
    model = build_detector(DetectorSpec.from_dict(spec), pretrained=False)
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(device).eval(), list(checkpoint["class_names"])


def predict(model: FasterRCNN, images: list[np.ndarray], device: str, batch_size: int = 8) -> list[dict]:
    """uint8 (H, W, 3) images → [{"boxes": float32 (N, 4) xyxy pixels, "scores": (N,), "labels": int64 (N,)}]
    as numpy, in batches of `batch_size`; with `model.spec.tta_views` > 1 the detections of that many dihedral
    views of each image, fused: views of its backbone maps when the backbone has a frozen prefix (the views such a
    detector is trained on; also at each shorter side of `model.spec.tta_scales`), else of the image; then, with
    `model.spec.soft_nms_sigma` > 0, Gaussian soft-NMS (`backend.models.tta.soft_nms`). The RPN keeps
    `model.spec.test_proposals` proposals per view and scale; `model.spec.bf16_inference` runs the network in bf16
    autocast where `autocast_device` allows it (outputs float32 either way)."""
    spec = getattr(model, "spec", None)
    if getattr(spec, "test_proposals", None):  # read here: the spec may have been replaced since the model was built
        model.rpn._post_nms_top_n["testing"] = spec.test_proposals
    amp = autocast_device(device, True) if getattr(spec, "bf16_inference", False) else None
    with torch.autocast(amp or "cpu", dtype=torch.bfloat16, enabled=amp is not None):
        fused = _predict_fused(model, images, device, batch_size)
    return [soft_nms(found, getattr(spec, "soft_nms_sigma", 0.0)) for found in fused]


def _predict_fused(model: FasterRCNN, images: list[np.ndarray], device: str, batch_size: int) -> list[dict]:
    """`predict` before soft-NMS."""
    views = getattr(getattr(model, "spec", None), "tta_views", 1)
    scales = getattr(getattr(model, "spec", None), "tta_scales", ())
    cacheable = getattr(getattr(model, "backbone", None), "cacheable", False)
    if views == 1 and not (scales and cacheable):
        return _predict_views(model, images, device, batch_size)
    if cacheable:
        return [predict_map_views(model, image, views, device, scales) for image in images]
    per_view = [_predict_views(model, [view(image, k) for image in images], device, batch_size)
                for k in range(views)]
    fused = []
    for j, image in enumerate(images):
        height, width = image.shape[:2]
        fused.append(fuse(np.concatenate([unview_boxes(per_view[k][j]["boxes"], k, width, height)
                                          for k in range(views)]),
                          np.concatenate([per_view[k][j]["scores"] for k in range(views)]),
                          np.concatenate([per_view[k][j]["labels"] for k in range(views)]), views,
                          size=(width, height)))
    return fused


@torch.inference_mode()
def _predict_views(model: FasterRCNN, images: list[np.ndarray], device: str, batch_size: int) -> list[dict]:
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        batch = [torch.from_numpy(image).to(device).permute(2, 0, 1).float().div(255)
                 for image in images[start:start + batch_size]]
        for result in model(batch):
            out.append({"boxes": result["boxes"].float().cpu().numpy(),
                        "scores": result["scores"].float().cpu().numpy(), "labels": result["labels"].cpu().numpy()})
    return out
