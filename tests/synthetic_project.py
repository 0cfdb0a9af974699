"""A synthetic Label Studio project for training tests: images with one bright blob each and their rectangles,
served by a loopback peer as Label Studio uploads (the export itself is served by the caller)."""

import numpy as np

from backend.core.detections import Detections
from backend.labelstudio.config import parse_label_config
from backend.labelstudio.results import detections_to_results
from tests.conftest import png_bytes

CONFIG = """<View><Image name="image" value="$image"/>
<RectangleLabels name="box" toName="image"><Label value="blob"/><Label value="cat"/></RectangleLabels>
<BrushLabels name="brush" toName="image"><Label value="blob"/></BrushLabels>
<PolygonLabels name="poly" toName="image"><Label value="blob"/></PolygonLabels>
<Choices name="other" toName="image"><Choice value="x"/></Choices></View>"""


def regions_for(tag, box, label="blob", size=(128, 96)):
    """Label Studio regions of one control for one box (brush/polygon from the filled box as the mask)."""
    w, h = size
    mask = np.zeros((1, h, w), bool)
    x1, y1, x2, y2 = box
    mask[0, y1:y2, x1:x2] = True
    dets = Detections(np.array([box], np.float32), [1.0], [label], size, mask)
    control = next(c for c in parse_label_config(CONFIG).controls if c.tag == tag)
    return detections_to_results(dets, [control])


def annotated_task(task_id, results, **annotation):
    return {"id": task_id, "data": {"image": f"/data/upload/{task_id}.png"},
            "annotations": [{"id": 100 + task_id, "result": results, **annotation}]}


def blob_image(task_id, rng):
    """A 128 x 96 image with one bright blob on dark noise, and its Label Studio rectangle."""
    image = rng.integers(0, 50, (96, 128, 3), dtype=np.uint8)
    x, y = int(rng.integers(5, 80)), int(rng.integers(5, 50))
    image[y:y + 30, x:x + 40] = (230, 200, 40)
    return image, regions_for("RectangleLabels", (x, y, x + 40, y + 30))


def serve_project(peer, count: int, seed: int) -> list[dict]:
    """`count` annotated synthetic tasks of project 9: images served by the loopback peer as Label Studio
    uploads; returns the tasks as Label Studio's export lists them (the caller serves the export)."""
    rng = np.random.default_rng(seed)
    tasks = []
    for task_id in range(1, count + 1):
        image, results = blob_image(task_id, rng)
        peer.routes[f"/data/upload/{task_id}.png"] = (200, png_bytes(image), {"Content-Type": "image/png"})
        tasks.append(annotated_task(task_id, results))
    return tasks
