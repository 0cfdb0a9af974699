"""The `sam3` pipeline with a tiny random-init SAM 3 loaded through the real from_pretrained path: label prompts as
concepts, instances mapped to the exact label values, masks to brush RLE and polygons, thresholds, NMS and the region
cap, `auto` preferring it when its weights load, and a video task through it."""

import numpy as np
import pytest

from backend.adapters.base import LazyModel
from backend.adapters.sam3 import Sam3ConceptSegmenter
from backend.core.params import PredictParams
from backend.labelstudio.config import parse_label_config
from backend.labelstudio.results import detections_to_results
from backend.labelstudio.rle import decode_mask
from backend.pipelines.sam3 import Sam3Pipeline
from tests.test_grounded import BOX_CONFIG, IMAGES, MASK_CONFIG
from tests.tiny_models import save_sam3

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ALL = PredictParams(concept_threshold=0.0, nms_iou=1.0, max_regions=1000)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_sam3(tmp_path_factory.mktemp("tiny") / "sam3-tiny")


@pytest.fixture(scope="module")
def pipeline(model_dir):
    return Sam3Pipeline(LazyModel("sam3", str(model_dir), lambda: Sam3ConceptSegmenter(str(model_dir), "cpu")))


def test_instances_carry_the_exact_label_of_the_prompt_that_found_them(pipeline):
    onto = parse_label_config(BOX_CONFIG)  # Cat: prompts "cat", "kitten"; Cup: "mug"; dog: its own value
    segmenter = pipeline.model.get()
    raw = segmenter.segment(IMAGES[:1], ["cat", "kitten", "mug", "dog"], 0.0, with_masks=False)[0]
    queries = len(raw.scores) // 4  # every query of every prompt passes a threshold of 0
    assert queries > 0 and np.bincount(raw.prompt_index).tolist() == [queries] * 4
    dets = pipeline.predict(IMAGES[:1], onto, ALL)[0]
    assert dets.labels.count("Cat") == 2 * queries and dets.labels.count("Cup") == queries
    assert dets.labels.count("dog") == queries and len(dets) == 4 * queries
    assert sorted(dets.scores.tolist()) == pytest.approx(sorted(raw.scores.clip(0, 1).tolist()), abs=1e-6)


def test_a_prompt_longer_than_the_text_encoder_reads_is_cut_not_fatal(pipeline):
    long = " ".join(["cat"] * 60)  # 60 words: more than the 32 tokens SAM 3's text encoder reads
    (found,) = pipeline.model.get().segment(IMAGES[:1], [long, "cup"], 0.0, with_masks=False)
    assert set(found.prompt_index.tolist()) == {0, 1}


def test_prompts_from_extra_params_are_the_concepts(pipeline):
    onto = parse_label_config(BOX_CONFIG, PredictParams().with_overrides({"prompts": {"dog": ["puppy", "dog"]}}))
    work = pipeline.prepare(IMAGES[:1], onto, ALL)
    assert work.prompts == ["cat", "kitten", "mug", "puppy", "dog"]
    assert work.owners == ["Cat", "Cat", "Cup", "dog", "dog"]
    assert pipeline.coverage(onto, ALL).predicted["dog"] == "concepts 'puppy', 'dog'"


def test_thresholds_nms_and_the_region_cap(pipeline):
    onto = parse_label_config(BOX_CONFIG)
    every = pipeline.predict(IMAGES, onto, ALL)
    scores = np.concatenate([d.scores for d in every])
    cut = float(np.sort(scores)[len(scores) // 2])  # an actual score: "reaches" includes it
    kept = pipeline.predict(IMAGES, onto, PredictParams(concept_threshold=cut, nms_iou=1.0, max_regions=1000))
    assert sum(map(len, kept)) == int((scores >= cut).sum()) and all((d.scores >= cut).all() for d in kept)
    assert all(len(d) == 0 for d in pipeline.predict(IMAGES, onto, PredictParams(concept_threshold=1.0)))
    capped = pipeline.predict(IMAGES, onto, PredictParams(concept_threshold=0.0, max_regions=3))
    assert all(len(d) <= 3 for d in capped)
    strict = pipeline.predict(IMAGES[:1], onto, PredictParams(concept_threshold=0.0, nms_iou=0.0))[0]
    for label in set(strict.labels):  # no two boxes of one label overlap at all after NMS at IoU 0
        boxes = strict.xyxy[np.array(strict.labels) == label]
        inter_w = np.minimum(boxes[:, None, 2], boxes[None, :, 2]) - np.maximum(boxes[:, None, 0], boxes[None, :, 0])
        inter_h = np.minimum(boxes[:, None, 3], boxes[None, :, 3]) - np.maximum(boxes[:, None, 1], boxes[None, :, 1])
        overlap = (inter_w > 0) & (inter_h > 0)
        np.fill_diagonal(overlap, False)
        assert not overlap.any()


def test_masks_only_when_the_config_wants_them_and_they_become_rle_and_polygons(pipeline):
    boxes = pipeline.predict(IMAGES[:2], parse_label_config(BOX_CONFIG), ALL)
    assert all(d.masks is None for d in boxes)
    onto = parse_label_config(MASK_CONFIG)
    params = PredictParams(concept_threshold=0.0, max_regions=5)
    dets = pipeline.predict(IMAGES[:2], onto, params)
    for image, d in zip(IMAGES[:2], dets):
        h, w = image.shape[:2]
        assert d.masks is not None and d.masks.shape == (len(d), h, w)
        results = detections_to_results(d, onto.controls, params.polygon_tolerance)
        brushes = [r for r in results if r["type"] == "brushlabels"]
        assert len(brushes) == len(d) and {r["type"] for r in results} >= {"rectanglelabels", "brushlabels"}
        for region, mask in zip(brushes, d.masks):
            assert np.array_equal(decode_mask(region["value"]["rle"], w, h), mask)
            assert region["value"]["brushlabels"][0] in ("Cat", "Cup", "dog")
        if any(m.sum() >= 9 for m in d.masks):
            assert any(r["type"] == "polygonlabels" for r in results)


def test_batches_give_what_single_images_give(pipeline):
    onto = parse_label_config(BOX_CONFIG)
    together = pipeline.predict(IMAGES, onto, ALL)
    alone = [pipeline.predict([image], onto, ALL)[0] for image in IMAGES]
    for a, b in zip(together, alone):
        assert a.labels == b.labels
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-3)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)


def test_auto_prefers_sam3_when_its_weights_load_and_falls_back_when_not(make_settings, model_dir, tmp_path, peer):
    from backend.service.app import create_app
    from tests.conftest import png_bytes

    peer.routes["/data/upload/1/a.png"] = (200, png_bytes(IMAGES[0]), {})
    app = create_app(make_settings(sam3_model=str(model_dir), label_studio_url=peer.url)).test_client()
    assert app.get("/health").get_json()["pipeline"] == "sam3"
    body = app.post("/predict", json={"tasks": [{"id": 1, "data": {"image": "/data/upload/1/a.png"}}],
                                      "label_config": MASK_CONFIG, "params": {}}).get_json()
    assert body["model_version"] == "sam3-sam3-tiny", body
    regions = body["results"][0]["result"]
    assert {r["type"] for r in regions} <= {"rectanglelabels", "brushlabels", "polygonlabels"}
    health = app.get("/health").get_json()["models"]["sam3"]
    assert health["state"] == "ready" and "sam3 pipeline" in health["used_by"]

    missing = str(tmp_path / "no-such-model")
    fallback = create_app(make_settings(sam3_model=missing, detector_model=missing)).test_client()
    assert fallback.get("/health").get_json()["pipeline"] == "lime"
    models = fallback.get("/health").get_json()["models"]
    assert models["video_tracker"]["state"] == "not loaded"  # loaded only for a request that needs it


VIDEO_CONFIG = ('<View><Video name="video" value="$video" framerate="25"/><VideoRectangle name="box" toName="video"/>'
                '<Labels name="videoLabels" toName="video"><Label value="cat"/><Label value="cup"/></Labels></View>')


@pytest.fixture(scope="module")
def video_checkpoint(tmp_path_factory):
    """A tiny SAM 3 checkpoint holding the image detector and the video tracker, as facebook/sam3 does."""
    from tests.tiny_sam3_video import save_sam3_video

    return save_sam3_video(tmp_path_factory.mktemp("tiny") / "sam3-video-tiny")


def _video_prediction(make_settings, peer, tmp_path, source):
    from backend.service.app import create_app
    from tests.video_scenes import pan_scene, write_video

    scene = pan_scene(20)
    peer.routes["/data/upload/1/pan.mp4"] = (200, write_video(tmp_path / "pan.mp4", scene.frames,
                                                              scene.fps).read_bytes(), {})
    app = create_app(make_settings(pipeline="sam3", sam3_model=str(source), label_studio_url=peer.url,
                                   label_studio_api_key="k" * 40)).test_client()
    extra = {"concept_threshold": 0.0, "video_frame_step": 2, "video_max_frames": 10, "track_min_length": 1,
             "track_activation_threshold": 0.0, "max_regions": 3}
    assert app.post("/setup", json={"project": 1, "schema": VIDEO_CONFIG, "extra_params": extra}).status_code == 200
    task = {"id": 1, "data": {"video": "/data/upload/1/pan.mp4"}}
    (prediction,) = app.post("/predict", json={"project": 1, "tasks": [task]}).get_json()["results"]
    assert "error" not in prediction, prediction
    assert prediction["model_version"] == f"sam3-{source.name}" and prediction["result"]
    for region in prediction["result"]:
        assert region["type"] == "videorectangle" and region["value"]["labels"][0] in ("cat", "cup")
        assert region["value"]["framesCount"] == 20
        assert all(0 <= k["x"] <= 100 and 0 <= k["x"] + k["width"] <= 100.01 for k in region["value"]["sequence"])
    return prediction, app.get("/health").get_json()["models"]


def test_a_video_task_is_followed_by_sam3s_video_model(make_settings, video_checkpoint, peer, tmp_path):
    _, models = _video_prediction(make_settings, peer, tmp_path, video_checkpoint)
    assert models["sam3_video"]["state"] == "ready"  # the clip went through concept tracking
    assert models["sam3"]["state"] == "not loaded"  # no frame needed the image model


def test_without_the_video_model_frames_are_detected_and_linked(make_settings, model_dir, peer, tmp_path):
    _, models = _video_prediction(make_settings, peer, tmp_path, model_dir)  # an image-only SAM 3 checkpoint
    assert models["sam3_video"]["state"] == "failed" and models["sam3"]["state"] == "ready"


def test_the_zero_shot_a_new_version_competes_with_is_the_pipeline_that_runs(make_settings, tmp_path):
    """`auto` picks sam3 (its directory exists) but its weights do not load: the training's zero-shot comparison is
    credited to the pipeline that then runs (LIME), not to SAM 3."""
    from backend.core.params import ProjectParams
    from backend.jobs.context import JobContext

    broken = tmp_path / "sam3-broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    context = JobContext.build(make_settings(sam3_model=str(broken), detector_model=str(tmp_path / "none")))
    zero_shot = context.zero_shot(parse_label_config(BOX_CONFIG), ProjectParams())
    assert zero_shot.model_version == "lime-efficientnet-lite0"
    assert context.models.sam3.failed
