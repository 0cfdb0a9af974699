"""End-to-end: the grounded pipeline (tiny random-init Grounding DINO + SAM) behind a real Label Studio:
boxes and brush masks from "retrieve predictions", and an interactive smart-tool request."""

import io

import pytest
import requests
from label_studio_sdk.client import LabelStudio
from label_studio_sdk.converter.brush import decode_rle
from PIL import Image
from skimage import data

pytestmark = pytest.mark.e2e
CONFIG = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="label" toName="image">
    <Label value="cat" prompt="cat; kitten"/><Label value="cup" prompt="mug"/>
  </RectangleLabels>
  <BrushLabels name="brush" toName="image" smart="true">
    <Label value="cat"/><Label value="cup"/>
  </BrushLabels>
  <KeyPointLabels name="click" toName="image" smart="true">
    <Label value="cat"/><Label value="cup"/>
  </KeyPointLabels>
</View>"""


@pytest.fixture(scope="module")
def grounded_project(label_studio, grounded_backend):
    ls = LabelStudio(base_url=label_studio.url, api_key=label_studio.token)
    project = ls.projects.create(title="e2e grounded", label_config=CONFIG)
    buf = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buf, format="PNG")
    response = requests.post(f"{label_studio.url}/api/projects/{project.id}/import",
                             files={"cat": ("chelsea.png", buf.getvalue(), "image/png")},
                             headers={"Authorization": f"Token {label_studio.token}"}, timeout=60)
    assert response.status_code == 201, response.text
    ml = ls.ml.create(project=project.id, url=grounded_backend.url, title="grounded", is_interactive=True,
                      extra_params={"box_threshold": 0.0, "text_threshold": 0.0, "max_regions": 4})
    return ls, project, ml


def test_boxes_and_masks_from_retrieve_predictions(grounded_project, grounded_backend):
    ls, project, _ = grounded_project
    ls.actions.create(id="retrieve_tasks_predictions", project=project.id, selected_items={"all": True, "excluded": []})
    (task,) = list(ls.tasks.list(project=project.id))
    predictions = ls.predictions.list(task=task.id)
    assert predictions, grounded_backend.log.read_text()[-3000:]
    prediction = predictions[0]
    assert prediction.model_version.startswith("grounded-grounding-dino+sam")
    kinds = {r["type"] for r in prediction.result}
    assert {"rectanglelabels", "brushlabels"} <= kinds
    for region in prediction.result:
        assert (region["original_width"], region["original_height"]) == (451, 300)
        assert region["value"][region["type"]][0] in {"cat", "cup"}
        if region["type"] == "brushlabels":
            assert decode_rle(bytes(region["value"]["rle"])).size == 451 * 300 * 4


def test_interactive_click_gives_a_brush_mask(grounded_project, label_studio):
    ls, project, ml = grounded_project
    (task,) = list(ls.tasks.list(project=project.id))
    context = {"result": [{"from_name": "click", "to_name": "image", "type": "keypointlabels", "is_positive": True,
                           "original_width": 451, "original_height": 300,
                           "value": {"x": 55.0, "y": 45.0, "width": 1.0, "keypointlabels": ["cat"]}}]}
    response = requests.post(f"{label_studio.url}/api/ml/{ml.id}/interactive-annotating",
                             json={"task": task.id, "context": context},
                             headers={"Authorization": f"Token {label_studio.token}"}, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    result = body["data"]["result"]
    assert all(r["type"] == "brushlabels" and r["value"]["brushlabels"] == ["cat"] for r in result)
    for region in result:
        mask = decode_rle(bytes(region["value"]["rle"])).reshape(300, 451, 4)[..., 3] > 0
        assert mask.any()
