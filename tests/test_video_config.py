"""`<Video>` + `<VideoRectangle>` + `<Labels>` label configs → Ontology; image configs unchanged."""

import pytest

from backend.core.errors import BadRequest
from backend.core.params import PredictParams
from backend.labelstudio.config import parse_label_config

VIDEO = ('<View><Video name="video" value="$video" framerate="25"/><VideoRectangle name="box" toName="video"/>'
         '<Labels name="videoLabels" toName="video"><Label value="cat" prompt="cat; kitten"/><Label value="cup" '
         'predicted_values="espresso, cup"/></Labels></View>')


def test_video_project():
    onto = parse_label_config(VIDEO)
    (control,) = onto.controls
    assert (control.name, control.tag, control.to_name, control.image_key) == ("box", "VideoRectangle", "video", "video")
    assert control.labels == ("cat", "cup") and control.result_type == "videorectangle"
    assert control.is_video and control.frame_rate == "25"
    assert onto.prompts == {"cat": ("cat", "kitten"), "cup": ("cup",)}
    assert onto.class_names == {"cup": ("espresso", "cup")}
    assert onto.image_keys == ("video",) and not onto.wants_masks


@pytest.mark.parametrize("xml,labels,frame_rate", [
    # labels of several <Labels> on the same video, in config order, once each
    ('<View><Video name="v" value="$clip"/><VideoRectangle name="r" toName="v"/>'
     '<Labels name="a" toName="v"><Label value="x"/><Label value="y"/></Labels>'
     '<Labels name="b" toName="v"><Label value="y"/><Label value="z"/></Labels></View>', ("x", "y", "z"), ""),
    # <Labels> on another video do not count
    ('<View><Video name="v" value="$a" framerate="$fps"/><Video name="w" value="$b"/><VideoRectangle name="r" toName="v"/>'
     '<Labels name="a" toName="v"><Label value="x"/></Labels><Labels name="b" toName="w"><Label value="q"/></Labels>'
     '</View>', ("x",), "$fps"),
])
def test_video_labels_come_from_labels_on_the_same_video(xml, labels, frame_rate):
    (control,) = parse_label_config(xml).controls
    assert control.labels == labels and control.frame_rate == frame_rate


def test_image_and_video_in_one_config():
    onto = parse_label_config(
        '<View><Image name="img" value="$image"/><RectangleLabels name="rect" toName="img"><Label value="sign"/>'
        '</RectangleLabels><Video name="vid" value="$video"/><VideoRectangle name="track" toName="vid"/>'
        '<Labels name="l" toName="vid"><Label value="sign"/></Labels></View>')
    tags = {c.name: (c.tag, c.image_key, c.is_video, c.frame_rate) for c in onto.controls}
    assert tags == {"rect": ("RectangleLabels", "image", False, ""), "track": ("VideoRectangle", "video", True, "")}
    assert onto.controls_for("video")[0].name == "track"


def test_extra_params_override_video_prompts():
    params = PredictParams().with_overrides({"prompts": {"cup": ["coffee cup"]}})
    assert parse_label_config(VIDEO, params).prompts["cup"] == ("coffee cup",)


@pytest.mark.parametrize("xml", [
    '<View><Video name="v" value="$v"/><VideoRectangle name="r" toName="v"/></View>',            # no labels at all
    '<View><Video name="v" value="$v"/><Labels name="l" toName="v"><Label value="x"/></Labels></View>',  # no boxes
    '<View><Video name="v" value="$v"/><RectangleLabels name="r" toName="v"><Label value="x"/></RectangleLabels></View>',
    '<View><Image name="i" value="$i"/><VideoRectangle name="r" toName="i"/>'
    '<Labels name="l" toName="i"><Label value="x"/></Labels></View>',                              # not on a video
])
def test_unsupported_video_configs(xml):
    with pytest.raises(BadRequest, match="no supported control"):
        parse_label_config(xml)
