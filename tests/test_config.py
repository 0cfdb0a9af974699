"""Label config → Ontology, prompts and class names, extra_params overrides."""

from pathlib import Path

import pytest

from backend.core.errors import BadRequest
from backend.core.params import PredictParams, ProjectParams
from backend.labelstudio.config import parse_label_config

ROOT = Path(__file__).resolve().parents[1]


def test_example_config_uses_every_supported_tag():
    onto = parse_label_config((ROOT / "label_config.xml").read_text())
    tags = {c.tag for c in onto.controls}
    assert {"RectangleLabels", "BrushLabels", "PolygonLabels", "Choices"} <= tags
    assert onto.image_keys == ("image",)
    assert onto.wants_masks


def test_prompt_and_predicted_values_attributes():
    onto = parse_label_config(
        '<View><Image name="img" value="$photo"/><RectangleLabels name="r" toName="img">'
        '<Label value="Cat" prompt="cat; kitten" predicted_values="tabby, tiger cat"/><Label value="Dog"/>'
        '</RectangleLabels></View>')
    assert onto.prompts == {"Cat": ("cat", "kitten"), "Dog": ("Dog",)}
    assert onto.class_names == {"Cat": ("tabby", "tiger cat")}
    (control,) = onto.controls
    assert (control.name, control.to_name, control.image_key) == ("r", "img", "photo")


def test_extra_params_override_prompts_and_classes():
    params = PredictParams().with_overrides({"prompts": {"Cat": ["feline"]}, "classes": {"Dog": "beagle"},
                                             "box_threshold": 0.5})
    onto = parse_label_config('<View><Image name="i" value="$i"/><RectangleLabels name="r" toName="i">'
                              '<Label value="Cat" prompt="cat"/><Label value="Dog"/></RectangleLabels></View>', params)
    assert onto.prompts["Cat"] == ("feline",) and onto.class_names["Dog"] == ("beagle",)
    assert params.box_threshold == 0.5


@pytest.mark.parametrize("extra,message", [
    ({"nope": 1}, "unknown key 'nope'"),
    ({"box_threshold": 3}, "between 0 and 1"),
    ({"max_regions": "many"}, "whole number between 1 and 1000"),
    ({"prompts": ["cat"]}, "map label values"),
    ({"train_augment": "rotate"}, r"train_augment must be one of \('flip', 'dihedral'\)"),
    ({"train_tta_views": 3}, r"train_tta_views must be one of \(0, 1, 2, 4, 8\), got 3"),
    ("text", "JSON object"),
])
def test_bad_extra_params(extra, message):
    with pytest.raises(BadRequest, match=message):
        ProjectParams.from_extra(extra)


def test_extra_params_split_into_prediction_and_training():
    params = ProjectParams.from_extra({"num_samples": 64, "train_epochs": 3, "train_augment": "dihedral"})
    assert (params.predict.num_samples, params.train.epochs, params.train.augment) == (64, 3, "dihedral")
    assert params.train.min_annotations == 10 and params.predict.box_threshold == 0.3


@pytest.mark.parametrize("xml,message", [
    ("", "empty"),
    ("<View><Image", "not valid XML"),
    ('<View><Text name="t" value="$t"/><Choices name="c" toName="t"><Choice value="a"/></Choices></View>',
     "no supported control"),
    ('<View><Image name="i" value="$i"/><TextArea name="x" toName="i"/></View>', "no supported control"),
])
def test_configs_without_supported_controls(xml, message):
    with pytest.raises(BadRequest, match=message):
        parse_label_config(xml)
