"""The reads a training job makes to find the tasks annotated since it read the project
(`backend.labelstudio.api.recently_annotated_ids`, `export_tasks(ids=...)`), against a real Label Studio: its Data
Manager filter and ordering, and its export by `ids[]`."""

import time

import pytest
from label_studio_sdk.client import LabelStudio

from backend.labelstudio.api import export_tasks, recently_annotated_ids
from backend.labelstudio.client import LabelStudioConnection

pytestmark = pytest.mark.e2e
CONFIG = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="box" toName="image"><Label value="tree"/></RectangleLabels>
</View>"""
BOX = [{"from_name": "box", "to_name": "image", "type": "rectanglelabels", "original_width": 100,
        "original_height": 100, "value": {"x": 10, "y": 10, "width": 20, "height": 20, "rotation": 0,
                                          "rectanglelabels": ["tree"]}}]


def test_recently_annotated_tasks_are_found_and_exported_by_id(label_studio):
    ls = LabelStudio(base_url=label_studio.url, api_key=label_studio.token)
    project = ls.projects.create(title="e2e recently annotated", label_config=CONFIG)
    ls.projects.import_tasks(id=project.id, request=[{"image": f"/data/upload/{i}.png"} for i in range(6)])
    ids = sorted(t.id for t in ls.tasks.list(project=project.id))
    ls.annotations.create(id=ids[2], result=[], was_cancelled=True)  # skipped: no annotation to learn from
    for index in (4, 0, 5):  # annotated in this order, not in id order
        ls.annotations.create(id=ids[index], result=BOX)
        time.sleep(0.05)
    connection = LabelStudioConnection(label_studio.url, label_studio.token)

    assert recently_annotated_ids(connection, project.id, set(), 16) == [ids[5], ids[0], ids[4]]
    assert recently_annotated_ids(connection, project.id, {ids[5]}, 1) == [ids[0]]
    assert recently_annotated_ids(connection, project.id, {ids[0], ids[4], ids[5]}, 16) == []

    exported = export_tasks(connection, project.id, ids=[ids[0], ids[5], ids[1]])  # ids[1]: not annotated
    assert sorted(t["id"] for t in exported) == [ids[0], ids[5]]
    assert all(len(t["annotations"]) == 1 and t["annotations"][0]["result"][0]["value"]["rectanglelabels"] == ["tree"]
               for t in exported)
