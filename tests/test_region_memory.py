"""A zero-shot pipeline answers an image once per label config and parameters (`RegionMemory`,
`RememberedPipeline`): the project's pre-labels, the held-out comparisons and a composite version's re-prediction
(a trained detector leaving labels to the zero-shot pipeline) reuse its regions."""

import numpy as np
import pytest

from backend.adapters.base import LazyModel
from backend.core.detections import Detections
from backend.core.params import NOT_REGION_PARAMS, PredictParams
from backend.core.region_memory import RegionMemory, regions_key
from backend.labelstudio.config import parse_label_config
from backend.pipelines.base import Steps
from backend.pipelines.coverage import Coverage
from backend.pipelines.remembered import RememberedPipeline
from backend.pipelines.trained import TrainedDetectorPipeline

CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
          '<Label value="cat"/><Label value="dog"/></RectangleLabels></View>')
PROMPTED = CONFIG.replace('<Label value="cat"/>', '<Label value="cat" predicted_values="kitten"/>')
ONTOLOGY = parse_label_config(CONFIG)


def _dets(n: int, masks: bool = False, side: int = 64) -> Detections:
    boxes = np.tile(np.array([[1, 2, 30, 40]], np.float32), (n, 1))
    mask = np.zeros((n, side, side), bool)
    mask[:, 5:20, 7:33] = True
    return Detections(boxes, np.linspace(0.2, 0.9, n), ["cat"] * n, (side, side), mask if masks else None)


class _Counting(Steps):
    """A zero-shot pipeline that counts the images it is run on and finds one box per label, placed by pixel value."""

    def __init__(self, name: str = "lime", version: str = "lime-1"):
        self.name, self.model_version, self.images_run = name, version, []

    def required_models(self):
        return []

    def coverage(self, ontology, params):
        return Coverage(self.model_version, {label: "counted" for label in ontology.labels}, {})

    def prepare(self, images, ontology, params):
        self.images_run.extend(int(image[0, 0, 0]) for image in images)
        return images, ontology.labels

    def forward(self, work):
        return work

    def finish(self, work):
        images, labels = work
        return [Detections(np.array([[image[0, 0, 0], i, image[0, 0, 0] + 5, i + 5] for i in range(len(labels))],
                                    np.float32), np.full(len(labels), 0.5), labels, (20, 10)) for image in images]


def _image(value: int) -> np.ndarray:
    return np.full((10, 20, 3), value, np.uint8)


# what changes between two questions → whether the second is answered from memory
@pytest.mark.parametrize("change,same", [
    ({}, True),
    ({"model_version": "lime-2"}, False),  # other weights
    ({"ontology": parse_label_config(PROMPTED)}, False),  # other prompts / class names
    ({"ontology": ONTOLOGY.restricted_to({"cat"})}, False),  # other labels
    ({"params": PredictParams(box_threshold=0.5)}, False),
    ({"params": PredictParams(num_samples=64)}, False),
    ({"params": PredictParams(max_regions=5)}, False),
    ({"params": PredictParams(prompts={"cat": ["kitten"]})}, False),
    ({"params": PredictParams(review_score="mirror")}, True),  # how predictions are scored, not what is found
    ({"params": PredictParams(accept_threshold=0.8, task_order="keep", auto_predict=False)}, True),
    ({"params": PredictParams(video_frame_step=2, track_min_length=5, polygon_tolerance=0.5)}, True),
    ({"image": _image(2)}, False),  # other pixels
    ({"image": np.full((20, 10, 3), 1, np.uint8)}, False),  # same bytes, other shape
])
def test_regions_key(change, same):
    base = {"model_version": "lime-1", "ontology": ONTOLOGY, "params": PredictParams(), "image": _image(1)}
    assert (regions_key(**base) == regions_key(**{**base, **change})) is same


# Every prediction parameter a pipeline's regions of one image can depend on. A new parameter fails this test until
# it is put here or in `NOT_REGION_PARAMS` (where it would let remembered regions answer after a change of it).
REGION_PARAMS = {"class_threshold", "num_samples", "superpixels", "lime_input_size", "lime_min_weight",
                 "lime_max_superpixels", "lime_min_component", "lime_windows", "box_threshold", "text_threshold",
                 "concept_threshold", "mask_threshold", "nms_iou", "max_regions", "cascade_prompt", "prompts",
                 "classes"}


def test_every_prediction_parameter_is_classified_for_the_memory_key():
    names = set(PredictParams().as_dict())
    assert REGION_PARAMS | NOT_REGION_PARAMS == names and not REGION_PARAMS & NOT_REGION_PARAMS
    assert set(PredictParams().region_dict()) == REGION_PARAMS


def test_memory_returns_what_was_stored_masks_included():
    memory = RegionMemory(2**20)
    stored = _dets(3, masks=True)
    memory.put("k", stored)
    back = memory.get("k")
    assert np.array_equal(back.xyxy, stored.xyxy) and np.array_equal(back.masks, stored.masks)
    assert back.labels == stored.labels and back.image_size == stored.image_size
    assert memory.get("other") is None and (memory.hits, memory.misses) == (1, 1)
    assert memory.nbytes < stored.masks.nbytes  # packed: a bit per mask pixel


# byte budget in entries of one size, entries put, which keys remain
@pytest.mark.parametrize("budget,put,kept", [
    (3, "abcd", "bcd"),  # least recently used out first
    (3, "abcad", "cad"),  # putting again refreshes
    (0, "ab", ""),  # 0: nothing kept
    (10, "abc", "abc"),
])
def test_memory_keeps_a_byte_budget(budget, put, kept):
    one = RegionMemory(2**20)
    one.put("x", _dets(2))
    memory = RegionMemory(budget * one.nbytes)
    for key in put:
        memory.put(key, _dets(2))
    assert {k for k in "abcd" if memory.get(k) is not None} == set(kept)
    assert memory.nbytes == len(kept) * one.nbytes


def test_an_entry_over_the_budget_is_not_kept():
    memory = RegionMemory(1000)
    memory.put("big", _dets(2, masks=True, side=200))
    assert memory.get("big") is None and memory.nbytes == 0


def test_only_images_not_answered_before_run_and_the_order_is_kept():
    inner = _Counting()
    pipeline = RememberedPipeline(inner, RegionMemory(2**20))
    first = pipeline.predict([_image(1), _image(2)], ONTOLOGY, PredictParams())
    again = pipeline.predict([_image(3), _image(2), _image(1)], ONTOLOGY, PredictParams())
    assert inner.images_run == [1, 2, 3]
    assert [d.xyxy[0, 0] for d in again] == [3, 2, 1] and np.array_equal(again[2].xyxy, first[0].xyxy)
    pipeline.predict([_image(1)], ONTOLOGY, PredictParams(box_threshold=0.9))
    assert inner.images_run == [1, 2, 3, 1]  # other parameters: asked again
    assert (pipeline.name, pipeline.model_version) == ("lime", "lime-1")


class _Detector:
    def detect(self, images, threshold):
        return [Detections(np.array([[15, 1, 18, 4]], np.float32), [0.9], ["cat"], (20, 10)) for _ in images]


def _trained(inner, memory, fallback_labels=("dog",)):
    return TrainedDetectorPipeline(LazyModel.loaded("detector", "v1", _Detector()), "v1",
                                   LazyModel.loaded("sam", "none", None), inner, fallback_labels, ("cat", "dog"),
                                   fallback_labels, memory=memory)


def test_a_version_leaving_labels_to_zero_shot_reuses_its_regions():
    """A project pre-labelled by the zero-shot pipeline, then served by a detector that leaves "dog" to it: the
    re-prediction runs the detector only."""
    memory, inner = RegionMemory(2**20), _Counting()
    images = [_image(1), _image(2)]
    params = PredictParams(box_threshold=0.1)  # the project's
    alone = RememberedPipeline(inner, memory).predict(images, ONTOLOGY, params)  # the Connect pre-labels
    trained = _trained(inner, memory)
    served = trained.predict(images, ONTOLOGY, params)
    assert inner.images_run == [1, 2]
    for dets, before in zip(served, alone):
        assert sorted(dets.labels) == ["cat", "dog"]
        dog = [box.tolist() for box, label in zip(dets.xyxy, dets.labels) if label == "dog"]
        assert dog == [box.tolist() for box, label in zip(before.xyxy, before.labels) if label == "dog"]
    assert trained.model_version == "v1+lime-1"


class _Asked(_Counting):
    """Also records the labels of each question."""

    def __init__(self):
        super().__init__()
        self.asked = []

    def prepare(self, images, ontology, params):
        self.asked.append(ontology.labels)
        return super().prepare(images, ontology, params)


# what the project's pre-labels left in memory → what the fallback asks the pipeline (None: nothing)
@pytest.mark.parametrize("pre_labelled,max_regions,asked", [
    (True, 50, None),  # the whole config's answer holds every "dog" region
    (True, 2, ("dog",)),  # the whole answer has max_regions regions: "dog" ones may have been cut
    (False, 50, ("dog",)),  # nothing remembered: asked for its labels only, as before the memory
])
def test_the_fallback_asks_for_its_labels_unless_the_whole_answer_has_them(pre_labelled, max_regions, asked):
    memory, inner = RegionMemory(2**20), _Asked()
    params = PredictParams(box_threshold=0.1, max_regions=max_regions)
    if pre_labelled:
        RememberedPipeline(inner, memory).predict([_image(1)], ONTOLOGY, params)
    inner.asked.clear()
    for _ in range(2):  # the second time from memory either way
        (dets,) = _trained(inner, memory).predict([_image(1)], ONTOLOGY, params)
        assert sorted(dets.labels) == ["cat", "dog"]
    assert inner.asked == ([] if asked is None else [asked])


class _Gate:
    def __init__(self):
        self.holds = 0

    def hold(self, priority):
        from contextlib import nullcontext
        self.holds += 1
        return nullcontext()


def test_the_device_is_not_taken_when_every_image_is_remembered():
    from backend.pipelines.base import run_pipeline

    gate, pipeline = _Gate(), RememberedPipeline(_Counting(), RegionMemory(2**20))
    run_pipeline(pipeline, [_image(1)], ONTOLOGY, PredictParams(), gate)
    run_pipeline(pipeline, [_image(1)], ONTOLOGY, PredictParams(), gate)
    assert gate.holds == 1
    run_pipeline(pipeline, [_image(1), _image(2)], ONTOLOGY, PredictParams(), gate)
    assert gate.holds == 2


def test_stored_regions_are_a_copy():
    memory, dets = RegionMemory(2**20), _dets(2)
    memory.put("k", dets)
    dets.xyxy[0, 0] = 99
    memory.get("k").xyxy[0, 1] = 99
    assert memory.get("k").xyxy[0].tolist() == [1, 2, 30, 40]


def test_the_selector_remembers_its_own_zero_shot_pipelines_only(make_settings, tmp_path):
    from backend.jobs.context import JobContext

    context = JobContext.build(make_settings(detector_model=str(tmp_path / "none")))
    selector = context.selector
    own, projects = _Counting(), _Counting()  # projects: a project's classifier through LIME, same name
    selector.pipelines["lime"] = own
    for _ in range(2):
        selector.run(own, [_image(1)], ONTOLOGY, PredictParams())
        selector.run(projects, [_image(1)], ONTOLOGY, PredictParams())
    assert own.images_run == [1] and projects.images_run == [1, 1]
    assert selector.memory.max_bytes == context.settings.region_memory_mb * 2**20


def test_predict_asks_lime_once_per_image_and_health_says_so(make_settings, peer, tmp_path):
    from backend.service.app import create_app
    from tests.conftest import png_bytes

    rng = np.random.default_rng(0)
    peer.routes["/data/upload/1/a.png"] = (200, png_bytes(rng.integers(0, 255, (40, 60, 3), np.uint8)), {})
    app = create_app(make_settings(detector_model=str(tmp_path / "none"), label_studio_url=peer.url,
                                   preload_models=False)).test_client()
    body = {"tasks": [{"id": 1, "data": {"image": "/data/upload/1/a.png"}}], "label_config": CONFIG,
            "params": {"num_samples": 16, "superpixels": 8}}
    first = app.post("/predict", json=body).get_json()
    memory = app.get("/health").get_json()["zero_shot_memory"]
    assert memory["images"] == 2 and memory["hits"] == 0  # the image and its mirror (the review score's second view)
    again = app.post("/predict", json=body).get_json()
    memory = app.get("/health").get_json()["zero_shot_memory"]
    assert memory["hits"] == 2 and memory["misses"] == 2 and memory["limit_mib"] == 256
    strip = lambda body: [{k: v for k, v in r.items() if k != "id"} for r in body["results"][0]["result"]]  # noqa
    assert strip(again) == strip(first) and again["results"][0]["score"] == first["results"][0]["score"]


# labels of the config, the detector's classes → labels left to the zero-shot pipeline (LIME over ImageNet: it knows
# cats and dogs, not blorps), i.e. the version's model_version suffix
@pytest.mark.parametrize("labels,classes,fallback", [
    (("cat", "dog"), ["cat"], True),  # "dog" unknown to the detector, LIME can: it serves it
    (("cat", "blorp"), ["cat"], False),  # nobody can predict "blorp" yet: LIME is not asked (it would refuse)
    (("cat",), ["cat"], False),
])
def test_the_zero_shot_pipeline_is_asked_only_for_labels_it_can_predict(make_settings, tmp_path, labels, classes,
                                                                         fallback):
    from backend.jobs.context import JobContext
    from backend.registry.versions import Version

    context = JobContext.build(make_settings(detector_model=str(tmp_path / "none")))
    config = CONFIG.replace('<Label value="cat"/><Label value="dog"/>',
                            "".join(f'<Label value="{label}"/>' for label in labels))
    ontology = parse_label_config(config)
    version = Version(1, "detector", "v0001", tmp_path, {"classes": classes})
    pipeline = context.selector._trained(version, ontology, PredictParams(), load=False)
    assert pipeline.model_version == ("project1-detector-v0001+lime-efficientnet-lite0" if fallback
                                      else "project1-detector-v0001")
    assert "blorp" not in pipeline.coverage(ontology, PredictParams()).predicted
