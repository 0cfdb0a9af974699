"""Grounding DINO + SAM pipeline with tiny random-init models loaded through the real from_pretrained path."""

import numpy as np
import pytest

from backend.adapters.grounding_dino import GroundingDinoDetector, prompt_text, token_prompt_matrix
from backend.adapters.sam import SamSegmenter
from backend.adapters.base import LazyModel
from backend.core.detections import box_iou
from backend.core.errors import BadRequest
from backend.core.params import PredictParams
from backend.labelstudio.config import parse_label_config
from backend.labelstudio.results import detections_to_results
from backend.pipelines.grounded import GroundedPipeline, prompts_for
from backend.pipelines.interactive import interactive_region, parse_context
from tests.tiny_models import save_grounding_dino, save_sam

RNG = np.random.default_rng(0)
IMAGES = [RNG.integers(0, 255, (300, 451, 3), dtype=np.uint8), RNG.integers(0, 255, (240, 200, 3), dtype=np.uint8),
          RNG.integers(0, 255, (180, 320, 3), dtype=np.uint8)]
BOX_CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
              '<Label value="Cat" prompt="cat; kitten"/><Label value="Cup" prompt="mug"/><Label value="dog"/>'
              '</RectangleLabels></View>')
MASK_CONFIG = BOX_CONFIG.replace("</View>", '<BrushLabels name="brush" toName="image"><Label value="Cat"/>'
                                 '<Label value="Cup"/><Label value="dog"/></BrushLabels><PolygonLabels name="poly" '
                                 'toName="image"><Label value="Cat"/><Label value="Cup"/><Label value="dog"/>'
                                 '</PolygonLabels></View>')


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return save_grounding_dino(root / "grounding-dino"), save_sam(root / "sam")


@pytest.fixture(scope="module")
def pipeline(model_dirs):
    gd, sam = model_dirs
    return GroundedPipeline(LazyModel("detector", str(gd), lambda: GroundingDinoDetector(str(gd), "cpu")),
                            LazyModel("sam", str(sam), lambda: SamSegmenter(str(sam), "cpu", cache_size=2)))


def test_prompt_text_and_token_spans():
    text, spans = prompt_text(["Cat", "traffic. light", "mug"])
    assert text == "cat . traffic light . mug ."
    assert [text[s:e] for s, e in spans] == ["cat", "traffic light", "mug"]
    offsets = [(0, 0), (0, 3), (4, 5), (6, 13), (14, 19), (20, 21), (22, 25), (26, 27), (0, 0)]
    matrix = token_prompt_matrix(offsets, spans)
    assert matrix.argmax(1)[[1, 3, 4, 6]].tolist() == [0, 1, 1, 2]
    assert matrix[[0, 2, 5, 7, 8]].sum() == 0  # specials and separators belong to no prompt


def test_prompts_come_from_config_and_extra_params():
    onto = parse_label_config(BOX_CONFIG, PredictParams().with_overrides({"prompts": {"dog": ["puppy", "dog"]}}))
    assert prompts_for(onto) == (["cat", "kitten", "mug", "puppy", "dog"], ["Cat", "Cat", "Cup", "dog", "dog"])


def test_labels_are_exact_config_values(pipeline):
    onto = parse_label_config(BOX_CONFIG)
    dets = pipeline.predict(IMAGES, onto, PredictParams(box_threshold=0.0, text_threshold=0.0))
    assert len(dets) == 3 and sum(len(d) for d in dets) > 0
    for d, image in zip(dets, IMAGES):
        assert set(d.labels) <= {"Cat", "Cup", "dog"}
        assert d.image_size == (image.shape[1], image.shape[0])
        assert (d.xyxy[:, [0, 2]] <= image.shape[1]).all() and (d.xyxy[:, [1, 3]] <= image.shape[0]).all()
        assert (d.xyxy[:, 2] > d.xyxy[:, 0]).all()


def test_thresholds_filter_monotonically(pipeline):
    onto = parse_label_config(BOX_CONFIG)
    counts = []
    for threshold in (0.0, 0.5, 0.6, 1.01):
        dets = pipeline.predict(IMAGES[:1], onto, PredictParams(box_threshold=threshold, text_threshold=0.0,
                                                                nms_iou=1.0, max_regions=1000))
        assert (dets[0].scores >= threshold).all()
        counts.append(len(dets[0]))
    assert counts == sorted(counts, reverse=True) and counts[0] > 0 and counts[-1] == 0


def test_nms_and_region_cap(pipeline):
    onto = parse_label_config(BOX_CONFIG)
    (dets,) = pipeline.predict(IMAGES[:1], onto, PredictParams(box_threshold=0.0, text_threshold=0.0, nms_iou=0.3))
    for label in set(dets.labels):
        boxes = dets.xyxy[[lab == label for lab in dets.labels]]
        iou = box_iou(boxes, boxes)
        assert (iou[~np.eye(len(boxes), dtype=bool)] <= 0.3 + 1e-6).all()
    (capped,) = pipeline.predict(IMAGES[:1], onto, PredictParams(box_threshold=0.0, text_threshold=0.0, max_regions=2))
    assert len(capped) == 2


def test_masks_only_when_config_wants_them(pipeline):
    params = PredictParams(box_threshold=0.0, text_threshold=0.0, max_regions=3)
    (boxes_only,) = pipeline.predict(IMAGES[:1], parse_label_config(BOX_CONFIG), params)
    assert boxes_only.masks is None
    onto = parse_label_config(MASK_CONFIG)
    dets = pipeline.predict(IMAGES, onto, params)
    for d, image in zip(dets, IMAGES):
        assert d.masks.shape == (len(d), image.shape[0], image.shape[1]) and d.masks.dtype == bool
    results = detections_to_results(dets[0], onto.controls)
    kinds = {r["type"] for r in results}
    assert {"rectanglelabels", "brushlabels"} <= kinds
    for region in results:
        assert region["value"][region["type"]][0] in {"Cat", "Cup", "dog"}


@pytest.mark.parametrize("context,expected", [
    ({"result": [{"type": "keypointlabels", "is_positive": True, "value": {"x": 50, "y": 25, "keypointlabels": ["Cat"]}}]},
     {"points": [[100, 50]], "labels": [1], "box": None, "label": "Cat"}),
    ({"result": [{"type": "keypointlabels", "is_positive": True, "value": {"x": 10, "y": 10}},
                 {"type": "keypointlabels", "is_positive": False, "value": {"x": 20, "y": 90}}]},
     {"points": [[20, 20], [40, 180]], "labels": [1, 0], "box": None, "label": None}),
    ({"result": [{"type": "rectanglelabels", "value": {"x": 10, "y": 20, "width": 50, "height": 25,
                                                       "rectanglelabels": ["Cup"]}}]},
     {"points": [], "labels": [], "box": [20, 40, 120, 90], "label": "Cup"}),
])
def test_parse_context(context, expected):
    prompt = parse_context(context, (200, 200))
    np.testing.assert_allclose(prompt.points.reshape(-1, 2), np.array(expected["points"]).reshape(-1, 2))
    assert prompt.point_labels.tolist() == expected["labels"]
    assert (prompt.box is None) == (expected["box"] is None)
    if expected["box"] is not None:
        np.testing.assert_allclose(prompt.box, expected["box"])
    assert prompt.label == expected["label"]


@pytest.mark.parametrize("context,message", [
    ({}, "non-empty 'result'"),
    ({"result": [{"type": "polygonlabels", "value": {}}]}, "not a keypoint or rectangle"),
    ({"result": [{"type": "keypointlabels", "value": {"x": "left"}}]}, "malformed"),
    ({"result": [{"type": "keypointlabels"}]}, "no 'value'"),
])
def test_parse_context_errors(context, message):
    with pytest.raises(BadRequest, match=message):
        parse_context(context, (100, 100))


def test_interactive_mask_and_embedding_cache(pipeline):
    sam = pipeline.sam.get()
    onto = parse_label_config(MASK_CONFIG)
    click = {"result": [{"type": "keypointlabels", "is_positive": True, "value": {"x": 40, "y": 40, "keypointlabels": ["Cup"]}}]}
    hits, misses = sam.cache.hits, sam.cache.misses
    first = interactive_region(sam, "img-a", IMAGES[0], onto, click)
    second = interactive_region(sam, "img-a", IMAGES[0], onto, click)
    assert (sam.cache.hits - hits, sam.cache.misses - misses) == (1, 1)
    assert np.array_equal(first.masks, second.masks)
    # the tiny random-weights SAM (seed 0) gives a non-empty mask for this click: the region is always checked
    assert len(first) == 1 and first.masks[0].any()
    assert first.labels == ("Cup",) and first.masks.shape == (1, 300, 451)
    for key, image in (("img-b", IMAGES[1]), ("img-c", IMAGES[2])):
        interactive_region(sam, key, image, onto, click)
    assert sam.cache.get("img-a") is None  # capacity 2: least recently used evicted


def test_service_reports_missing_weights_and_falls_back(make_settings, tmp_path, peer):
    from backend.service.app import create_app
    from tests.conftest import png_bytes

    peer.routes["/data/upload/1/a.png"] = (200, png_bytes(IMAGES[0]), {})
    missing = str(tmp_path / "no-such-model")
    strict = create_app(make_settings(pipeline="grounded", detector_model=missing, sam_model=missing,
                                      label_studio_url=peer.url)).test_client()
    config_xml = BOX_CONFIG
    assert strict.get("/health").get_json()["models"]["detector"]["state"] == "not loaded"
    response = strict.post("/predict", json={"tasks": [{"id": 1, "data": {"image": "/data/upload/1/a.png"}}],
                                             "label_config": config_xml})
    assert response.status_code == 503
    assert f"detector model {missing!r} is not available" in response.get_json()["error"]
    health = strict.get("/health").get_json()
    assert health["status"] == "UP" and health["pipeline"] == "grounded"
    assert health["models"]["detector"]["state"] == "failed" and "no-such-model" in health["models"]["detector"]["error"]

    auto = create_app(make_settings(detector_model=missing, sam_model=missing)).test_client()
    assert auto.get("/health").get_json()["pipeline"] == "lime"  # grounded weights missing → lime
    assert auto.post("/setup", json={"schema": config_xml}).get_json()["model_version"] == "lime-efficientnet-lite0"


def test_service_grounded_predict_and_interactive(make_settings, model_dirs, peer):
    from backend.service.app import create_app
    from tests.conftest import png_bytes

    gd, sam = model_dirs
    peer.routes["/data/upload/1/a.png"] = (200, png_bytes(IMAGES[0]), {})
    client = create_app(make_settings(pipeline="grounded", detector_model=str(gd), sam_model=str(sam),
                                      label_studio_url=peer.url)).test_client()
    params = {"box_threshold": 0.0, "text_threshold": 0.0, "max_regions": 3}
    assert client.post("/setup", json={"project": "5", "schema": MASK_CONFIG, "extra_params": params}).status_code == 200
    tasks = [{"id": 1, "data": {"image": "/data/upload/1/a.png"}}]
    body = client.post("/predict", json={"tasks": tasks, "project": "5", "label_config": MASK_CONFIG}).get_json()
    kinds = {r["type"] for r in body["results"][0]["result"]}
    assert {"rectanglelabels", "brushlabels", "polygonlabels"} <= kinds
    assert body["results"][0]["model_version"].startswith("grounded-grounding-dino+sam")
    click = {"result": [{"type": "keypointlabels", "to_name": "image", "is_positive": True,
                         "value": {"x": 50, "y": 50, "keypointlabels": ["dog"]}}]}
    body = client.post("/predict", json={"tasks": tasks, "project": "5", "label_config": MASK_CONFIG,
                                         "params": {"context": click}}).get_json()
    (prediction,) = body["results"]
    assert prediction["model_version"].startswith("interactive-")
    assert all(r["type"] == "brushlabels" and r["value"]["brushlabels"] == ["dog"] for r in prediction["result"])
    bad = client.post("/predict", json={"tasks": tasks, "label_config": MASK_CONFIG,
                                        "params": {"context": {"result": [{"type": "textarea", "value": {}}]}}})
    assert bad.status_code == 400 and "not a keypoint or rectangle" in bad.get_json()["error"]


@pytest.mark.parametrize("shape", [(300, 451), (451, 300), (240, 240), (97, 503)])
def test_on_device_preprocessing_matches_the_processors(model_dirs, shape):
    import torch
    from transformers import AutoProcessor, SamProcessor

    from backend.adapters.preprocess import dino_pixels, sam_pixels

    gd, sam = model_dirs
    image = RNG.integers(0, 255, (*shape, 3), dtype=np.uint8)
    dino = AutoProcessor.from_pretrained(gd).image_processor
    reference = dino(images=[image], return_tensors="pt")
    pixels, mask = dino_pixels([image], dino, "cpu", torch.float32)
    assert pixels.shape == reference["pixel_values"].shape and torch.equal(mask, reference["pixel_mask"])
    assert (pixels - reference["pixel_values"]).abs().mean() < 0.05  # PIL vs torch bilinear resampling
    sam_processor = SamProcessor.from_pretrained(sam).image_processor
    reference = sam_processor(images=[image], return_tensors="pt")
    pixels, originals, resized = sam_pixels([image], sam_processor, "cpu", torch.float32)
    assert pixels.shape == reference["pixel_values"].shape
    assert originals == [tuple(reference["original_sizes"][0].tolist())]
    assert resized == [tuple(reference["reshaped_input_sizes"][0].tolist())]
    assert (pixels - reference["pixel_values"]).abs().mean() < 0.05


def test_only_equal_processed_sizes_share_a_batch(pipeline):
    from backend.adapters.grounding_dino import same_size_batches

    assert same_size_batches([(2, 3), (4, 5), (2, 3), (2, 3)], 2) == [[0, 2], [3], [1]]
    detector = pipeline.detector.get()
    images = [IMAGES[0], IMAGES[1], IMAGES[0].copy(), IMAGES[2]]
    prompts = ["cat", "mug"]
    batched = detector.detect(images, prompts, 0.0, 0.0)
    for image, together in zip(images, batched):
        (alone,) = detector.detect([image], prompts, 0.0, 0.0)
        np.testing.assert_allclose(together.xyxy, alone.xyxy, atol=1e-3)
        assert together.prompt_index.tolist() == alone.prompt_index.tolist()
