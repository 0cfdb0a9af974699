"""CUDA paths (bf16/fp16 models, on-device LIME). Skipped cleanly without a GPU (CI has none)."""

import pytest
import torch
from skimage import data

from backend.adapters.base import LazyModel
from backend.adapters.classifier import build_classifier
from backend.adapters.grounding_dino import GroundingDinoDetector
from backend.adapters.sam import SamSegmenter
from backend.core.detections import box_iou
from backend.core.ontology import Control, Ontology
from backend.core.params import PredictParams
from backend.pipelines.grounded import GroundedPipeline
from backend.pipelines.interactive import interactive_region
from backend.pipelines.lime_boxes import LimeBoxesPipeline
from tests.tiny_models import save_grounding_dino, save_sam

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
LABELS = ("cat", "cup")
ONTOLOGY = Ontology((Control("box", "RectangleLabels", "image", "image", LABELS),
                     Control("brush", "BrushLabels", "image", "image", LABELS)))


def test_lime_on_cuda_matches_cpu(tmp_path):
    params = PredictParams(num_samples=256)
    boxes = {}
    for device in ("cuda", "cpu"):
        classifier = build_classifier("efficientnet-lite0", device, tmp_path)
        pipeline = LimeBoxesPipeline(LazyModel("c", "efficientnet-lite0", lambda: classifier))
        (dets,) = pipeline.predict([data.chelsea()], ONTOLOGY, params)
        assert dets.labels and set(dets.labels) == {"cat"}
        boxes[device] = dets.xyxy
    assert box_iou(boxes["cuda"], boxes["cpu"]).max() >= 0.9


def test_grounded_on_cuda_in_half_precision(tmp_path):
    gd, sam = save_grounding_dino(tmp_path / "gd"), save_sam(tmp_path / "sam")
    detector, segmenter = GroundingDinoDetector(str(gd), "cuda"), SamSegmenter(str(sam), "cuda")
    assert detector.dtype == torch.bfloat16 and segmenter.dtype == torch.float16
    pipeline = GroundedPipeline(LazyModel("d", str(gd), lambda: detector), LazyModel("s", str(sam), lambda: segmenter))
    images = [data.chelsea(), data.coffee(), data.chelsea()]
    dets = pipeline.predict(images, ONTOLOGY, PredictParams(box_threshold=0.0, text_threshold=0.0, max_regions=3))
    for d, image in zip(dets, images):
        assert len(d) == 3 and set(d.labels) <= set(LABELS)
        assert d.masks.shape == (3, image.shape[0], image.shape[1])
    click = {"result": [{"type": "keypointlabels", "is_positive": True, "value": {"x": 50, "y": 50, "keypointlabels": ["cat"]}}]}
    region = interactive_region(segmenter, "k", images[0], ONTOLOGY, click)
    assert region.masks is not None and segmenter.cache.misses == 1
    interactive_region(segmenter, "k", images[0], ONTOLOGY, click)
    assert segmenter.cache.hits == 1
