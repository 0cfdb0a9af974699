"""The review page and Label Studio's labelling UI in a real headless browser (Debian's Chromium driven by
Playwright), against a real Label Studio and this backend under gunicorn.

A project (rectangles and brush masks) gets six real photos (skimage.data); the backend pre-labels them (LIME, cheap
parameters); annotations are created through the SDK: two accept the pre-labels unchanged, one moves the boxes,
one swaps the label, one deletes every region, one task stays unlabelled. Then the browser
- opens `/review?project=N`, waits while it is computed, checks the plots, that the numbers shown match
  `/review.json`, and follows a suspicious-annotation link into Label Studio, which opens that task;
- opens Label Studio's labelling UI on the unlabelled task and checks that our boxes and brush mask render.

Screenshots go to `$SCREENSHOTS_DIR` (else the test's tmp dir): `review_page.png`, `labelling_prelabels.png`.
Skipped (never failed) when no Chromium or no Playwright is installed (`make test` installs both).
"""

import json

import pytest
import requests

from tests.e2e.browser import labelling_ui_shows_task, login
from tests.e2e.projects import Project, finished_jobs, wait_until
from tests.e2e.servers import BackendServer

pytestmark = pytest.mark.e2e

CONFIG = """<View><Image name="image" value="$image"/>
<RectangleLabels name="box" toName="image"><Label value="cat"/><Label value="cup"/></RectangleLabels>
<BrushLabels name="mask" toName="image"><Label value="cat"/><Label value="cup"/></BrushLabels></View>"""
EXTRA = {"num_samples": 32, "superpixels": 16, "train_min_new": 1000,  # cheap LIME; no training in this test
         "accept_threshold": 0.5}  # stated on the page (hybrid routing), never applied
OTHER = {"cat": "cup", "cup": "cat"}


@pytest.fixture(scope="module")
def backend(label_studio, tmp_path_factory):
    server = BackendServer(tmp_path_factory.mktemp("review-page"), label_studio.url, label_studio.token,
                           PIPELINE="lime", PRELOAD_MODELS="false")
    yield server
    server.stop()


def photo(name: str) -> bytes:
    import io

    from PIL import Image
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(getattr(data, name)()).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def project(label_studio, backend):
    """(Project, {role: task id}, predictions by task id): six pre-labelled photos, five annotated."""
    project = Project(label_studio, backend, "review-page", EXTRA, CONFIG)
    images = {"chelsea": photo("chelsea"), "coffee": photo("coffee")}
    files = {f"f{i}": (f"{name}{i}.png", images[name], "image/png")
             for i, name in enumerate(["chelsea", "coffee"] * 3)}
    response = requests.post(f"{project.url}/api/projects/{project.id}/import", files=files,
                             headers=project.headers, timeout=120)
    assert response.status_code == 201, response.text
    ids = project.task_ids()
    wait_until(lambda: len({p["task"] for p in project.predictions()}) == len(ids), 300,
               "pre-labels for every task", backend.log)
    finished_jobs(backend, project.id)
    predictions = {p["task"]: p for p in project.predictions()}
    roles = dict(zip(["accepted", "accepted2", "moved", "swapped", "deleted", "unlabelled"], ids))
    for role, task_id in roles.items():
        result = [dict(r) for r in predictions[task_id]["result"]]
        for region in result:
            region.pop("score", None)
        if role == "moved":
            for region in result:
                if region["type"] == "rectanglelabels":
                    region["value"] = {**region["value"], "x": region["value"]["x"] / 2,
                                       "width": region["value"]["width"] * 0.6}
        elif role == "swapped":
            for region in result:
                kind = region["type"]
                region["value"] = {**region["value"], kind: [OTHER[v] for v in region["value"][kind]]}
        elif role == "deleted":
            result = []
        if role != "unlabelled":
            project.ls.annotations.create(id=task_id, result=result, lead_time=5.0 + task_id % 7)
    return project, roles, predictions


def values(page, selector: str) -> dict:
    """{data-key: data-value} of the elements under `selector`."""
    return page.eval_on_selector_all(f"{selector} [data-key][data-value]",
                                     "els => Object.fromEntries(els.map(e => [e.dataset.key, e.dataset.value]))")


def test_review_page_in_a_browser(browser, label_studio, backend, project, shots):
    project, roles, _ = project
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    login(page, label_studio)

    first = page.goto(f"{backend.url}/review?project={project.id}")
    assert first.status in (200, 202)
    page.wait_for_selector("#summary", timeout=300_000)  # the computing page reloads itself until the report is in
    report = requests.get(f"{backend.url}/review.json", params={"project": project.id}, timeout=30).json()
    assert report["status"] == "ready", report

    # plots: inline SVG, one per section at least
    plots = page.eval_on_selector_all("figure svg[data-plot]", "els => els.map(e => e.dataset.plot)")
    assert len(plots) >= 5 and page.locator("#plot-embedding svg").count() == 1, plots
    assert page.locator("#report-age").inner_text().startswith("computed ")

    # the numbers shown are the report's
    summary = values(page, "#summary")
    for key in ("tasks", "annotated_tasks", "annotations", "predictions", "regions", "suspicious"):
        assert int(summary[key]) == report["counts"][key], key
    assert report["counts"]["tasks"] == 6 and report["counts"]["annotations"] == 5
    for row in report["statistics"]["labels"]:
        shown = values(page, f'#labels-table tr[data-label="{row["label"]}"]')
        assert int(shown["regions"]) == row["regions"], row
    for label, counts in report["acceptance"]["by_label"].items():
        shown = values(page, f'#acceptance-labels tr[data-label="{label}"]')
        for key in ("predicted", "accepted", "adjusted", "relabelled", "deleted", "added"):
            assert int(shown[key]) == counts[key], (label, key)
    assert sum(c["accepted"] for c in report["acceptance"]["by_label"].values()) >= 2, \
        json.dumps(report["acceptance"], indent=1)  # two accepted unchanged
    entries = report["suspicious"]["entries"]
    kinds = {e["task_id"]: e["kind"] for e in entries}
    assert kinds.get(roles["swapped"]) == "possibly_swapped", json.dumps(entries, indent=1)
    assert roles["deleted"] in kinds, json.dumps(entries, indent=1)
    shown_rows = page.eval_on_selector_all("#suspicious-table tbody tr", "els => els.map(e => e.dataset.taskId)")
    assert [int(t) for t in shown_rows] == [e["task_id"] for e in entries]
    hybrid = report["routing"]["hybrid"]  # hybrid routing stated at the project's accept_threshold
    statement = page.locator("#hybrid-statement")
    assert (hybrid["accept_threshold"], hybrid["threshold_from"]) == (0.5, "project")
    assert statement.get_attribute("data-threshold-from") == "project"
    assert statement.inner_text() == hybrid["statement"]
    assert f"of the {hybrid['waiting_tasks']} tasks waiting" in hybrid["statement"]
    assert hybrid["waiting_tasks"] == 1 and hybrid["reviewed_tasks"] == 5  # six tasks, five annotated
    waiting = [t for t in project.ls.tasks.list(project=project.id) if not t.total_annotations]
    assert len(waiting) == 1  # shown, never applied: the waiting task is still waiting
    assert page.locator("#hybrid-table tbody tr").count() == len(hybrid["points"])
    order = page.locator("#review-order")  # which score orders the project: five reviews are too few to learn one
    assert order.get_attribute("data-score") == "default" and report["review_order"]["review_score"] == "errors"
    assert order.inner_text().startswith("Prediction scores use the project's review score (review_score 'errors'")
    assert "a region model needs 20;" in order.inner_text()
    assert order.get_attribute("data-count-model") == "no" and "a count model needs 20" in order.inner_text()
    assert order.get_attribute("data-probability") == "no" and report["review_order"]["probability"] is False
    drawing = page.locator("#drawing-time")  # the five lead times Label Studio stored, too few for a drawing time
    assert report["acceptance"]["drawing_time"]["n_annotations"] == 5
    assert drawing.get_attribute("data-seconds") == "" and drawing.get_attribute("data-configured") == "7.0"
    assert drawing.inner_text().startswith("Drawing time per box: not measured yet (5 annotations with a lead time")
    page.locator("#routing").screenshot(path=str(shots / "review_routing.png"))
    page.screenshot(path=str(shots / "review_page.png"), full_page=True, clip={"x": 0, "y": 0, "width": 1280, "height": 1800})

    # a suspicious annotation's link opens that task in Label Studio
    target = roles["swapped"]
    link = page.locator(f'#suspicious-table a.task-link[data-task-id="{target}"]').first
    assert link.get_attribute("href") == f"{label_studio.url}/projects/{project.id}/data?task={target}"
    with context.expect_page() as opened:
        link.click()
    task_page = opened.value
    task_page.wait_for_load_state()
    assert task_page.url.endswith(f"/projects/{project.id}/data?task={target}")
    labelling_ui_shows_task(task_page, target)
    context.close()


def test_labelling_ui_renders_our_boxes_and_brush_mask(browser, label_studio, project, shots):
    project, roles, predictions = project
    task_id = roles["unlabelled"]
    predicted = predictions[task_id]["result"]
    assert {r["type"] for r in predicted} >= {"rectanglelabels", "brushlabels"}, predicted
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    login(page, label_studio)
    page.goto(f"{label_studio.url}/projects/{project.id}/data?task={task_id}")
    labelling_ui_shows_task(page, task_id)
    expected = {"rectangleregion": sum(r["type"] == "rectanglelabels" for r in predicted),
                "brushregion": sum(r["type"] == "brushlabels" for r in predicted)}
    count_regions = ("() => { const r = window.Htx.annotationStore.selected.regions; return {"
                     "rectangleregion: r.filter(x => x.type === 'rectangleregion').length,"
                     "brushregion: r.filter(x => x.type === 'brushregion').length}; }")
    try:  # the editor adds the pre-labels' regions, then Konva paints boxes and decoded masks: poll, do not race
        page.wait_for_function(f"want => {{ const n = ({count_regions})(); return n.rectangleregion === "
                               "want.rectangleregion && n.brushregion === want.brushregion; }", arg=expected,
                               timeout=60_000)
    except Exception:
        pytest.fail(f"regions shown {page.evaluate(count_regions)}, predicted {expected}")
    paint = ("() => { const stage = window.Konva && window.Konva.stages.find(s => s.width() > 0); if (!stage) "
             "return {rects: 0, images: 0}; return {rects: stage.find('Rect').filter(n => n.isVisible() && "
             "n.width() > 2).length, images: stage.find('Image').filter(n => n.isVisible() && n.image()).length}; }")
    try:
        page.wait_for_function(f"() => {{ const p = ({paint})(); return p.rects >= 1 && p.images >= 1; }}",
                               timeout=60_000)
    except Exception:
        pytest.fail(f"Konva painted {page.evaluate(paint)}: no box or no brush mask on the canvas")
    page.wait_for_timeout(500)  # let the last frame reach the screen before the screenshot
    page.screenshot(path=str(shots / "labelling_prelabels.png"))
    context.close()
