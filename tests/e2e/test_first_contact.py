"""First contact, through Label Studio's own web UI as a new admin meets the product: a real Label Studio 1.23 in
headless Chromium (Playwright), this backend under gunicorn with its defaults (offline: the LIME pipeline).

1. The "Create Project" wizard imports six photos and a config with a label the offline default cannot pre-label
   ("person": no ImageNet class); Settings → Model → Connect Model. No other step: every task gets a prediction,
   the project's model version and task sampling are set, so the Data Manager's "Prediction score" column shows
   our scores and sorts lowest first, and "Label All Tasks" opens the lowest-scored task (Uncertainty sampling,
   even with the view sorted the other way). The model card's "Send Test Request" names the label that cannot be
   pre-labelled and the fix.
2. A config of only such labels ("pothole") connects ("Connected"); once its pre-labelling job has failed, the card
   reads "Error" and "Edit → Validate and Save" shows why, in our words.
3. A backend with a wrong token: `/health` says `auth failed`, and Label Studio's Connect dialog shows the reason.

Screenshots (to `$SCREENSHOTS_DIR`, the README's docs/screenshots): first_contact_*.png.
"""

import re
import time

import pytest
import requests
from PIL import Image
from skimage import data

from tests.e2e.browser import labelling_ui_shows_task, login
from tests.e2e.projects import jobs_of, wait_until
from tests.e2e.servers import BackendServer

pytestmark = pytest.mark.e2e

CONFIG = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="label" toName="image">
    <Label value="cat"/>
    <Label value="cup"/>
    <Label value="person"/>
  </RectangleLabels>
</View>"""
NO_LABEL_CONFIG = CONFIG.replace('<Label value="cat"/>\n    <Label value="cup"/>\n    <Label value="person"/>',
                                 '<Label value="pothole"/>')
MODEL = "lime-efficientnet-lite0"
ROWS_JS = """() => [...document.querySelectorAll('[data-testid=table-row-wrapper]')]
  .sort((a, b) => parseFloat(a.style.top) - parseFloat(b.style.top))
  .map(w => Number(w.querySelector('input[aria-label^="Select Task "]').getAttribute('aria-label').slice(12)))"""
SCORES_JS = """() => { const head = [...document.querySelectorAll('.lsf-th')];
  const i = head.findIndex(h => h.dataset.id === 'tasks:predictions_score');
  return [...document.querySelectorAll('[data-testid=table-row-wrapper]')]
    .sort((a, b) => parseFloat(a.style.top) - parseFloat(b.style.top))
    .map(w => [...w.querySelectorAll('[data-testid=table-row] > .lsf-table__cell')][i].innerText.trim()); }"""


def photos(folder) -> list[str]:
    """Six small real photos (cats, cups, a person) as PNG files."""
    folder.mkdir(parents=True, exist_ok=True)
    images = [data.chelsea(), data.coffee(), data.astronaut(), data.cat(), data.coffee()[:, ::-1],
              data.chelsea()[40:, 60:]]
    paths = []
    for i, array in enumerate(images):
        image = Image.fromarray(array)
        image.thumbnail((320, 320))
        path = folder / f"photo{i}.png"
        image.save(path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def backend(label_studio, tmp_path_factory):
    """The backend as `make serve` runs it: default settings (PIPELINE=auto → LIME offline, models preloaded)."""
    server = BackendServer(tmp_path_factory.mktemp("first-contact"), label_studio.url, label_studio.token)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def page(browser, label_studio):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    login(page, label_studio)
    yield page
    context.close()


def api(label_studio, path: str, **params):
    response = requests.get(f"{label_studio.url}{path}", params=params, timeout=30,
                            headers={"Authorization": f"Token {label_studio.token}"})
    assert response.status_code == 200, response.text
    return response.json()


def create_project_in_wizard(page, label_studio, title: str, files: list[str], config: str) -> int:
    """Projects → Create Project: name, Data Import (files), Labeling Setup (custom XML), Save → its id."""
    page.goto(f"{label_studio.url}/projects/")
    # opening the wizard creates a draft project: wait for it before touching the form
    with page.expect_response(lambda r: r.url.endswith("/api/projects") and r.request.method == "POST"):
        page.click('button[aria-label="Create new project"]')
    page.fill("#project_name", title)
    tab = lambda name: page.locator(".lsf-create-project .lsf-toggle-items__item", has_text=name)  # noqa: E731
    tab("Data Import").click()
    page.set_input_files("input#file-input[type=file]", files)
    page.get_by_text(f"{len(files)} files uploaded").wait_for(timeout=60_000)
    tab("Labeling Setup").click()
    page.click('button[aria-label="Create custom template"]')
    page.wait_for_selector(".CodeMirror")
    set_config_in_editor(page, config)
    with page.expect_response(lambda r: re.search(r"/api/projects/\d+$", r.url) and r.request.method == "PATCH"):
        page.locator(".lsf-create-project button", has_text="Save").click()
    page.wait_for_url(re.compile(r"/projects/\d+/data"), timeout=60_000)
    return int(re.search(r"/projects/(\d+)/data", page.url).group(1))


def set_config_in_editor(page, config: str, tries: int = 3) -> None:
    """Types the label config into the wizard's code editor and waits until the wizard's preview shows its first label:
    a value set before the editor is wired to the wizard is lost, and Save then stores the template's empty
    `<View></View>` (seen once in CI-like runs), so the value is set again until the preview follows it."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    first = re.search(r'<(?:Label|Choice) value="([^"]+)"', config)
    for attempt in range(tries):
        page.evaluate("xml => document.querySelector('.CodeMirror').CodeMirror.setValue(xml)", config)
        if first is None:
            return
        try:
            page.locator(".lsf-create-project").get_by_text(first.group(1), exact=True).first.wait_for(timeout=10_000)
            return
        except PlaywrightTimeout:
            if attempt == tries - 1:
                raise


def save_model_form(page):
    """"Validate and Save" in the Connect / Edit Model dialog; the POST / PATCH /api/ml response."""
    with page.expect_response(lambda r: "/api/ml" in r.url and r.request.method in ("POST", "PATCH")) as answer:
        page.click('button[aria-label="Save machine learning form"]')
    return answer.value


def open_connect_dialog(page, label_studio, project_id: int, url: str) -> None:
    page.goto(f"{label_studio.url}/projects/{project_id}/settings/ml")
    page.click('button[aria-label="Add machine learning model"]')  # "Connect Model"
    page.fill("input[name=title]", "autolabel")
    page.fill("input[name=url]", url)


def card_state(page) -> str:
    page.wait_for_selector(".lsf-backend-card .lsf-ml__status-label")
    return page.inner_text(".lsf-backend-card .lsf-ml__status-label").strip()


def open_card_menu(page, item: str) -> None:
    """The model card's menu → `item`; the menu stays open over the dialog it opens: a click on the dialog's title
    closes it (a click outside the dialog would close the dialog)."""
    page.click('.lsf-backend-card button[aria-label="Machine learning model options"]')
    entry = page.locator(".lsf-dropdown li", has_text=item)
    entry.click()
    page.wait_for_selector(".lsf-modal-ls.lsf-visible:not(.lsf-before-appear) .lsf-modal-ls__title")
    for _ in range(20):
        page.locator(".lsf-modal-ls__title").last.click()
        page.wait_for_timeout(250)
        if not entry.is_visible():
            return
    raise AssertionError(f"the model card's menu stays open after {item!r}")


def tall_screenshot(page, path) -> None:
    """A screenshot tall enough for the whole dialog and its error."""
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": 1200})
    page.wait_for_timeout(300)
    page.screenshot(path=str(path))
    page.set_viewport_size(size)


def inline_error(page) -> str:
    page.wait_for_selector(".lsf-inline-error .lsf-error-message__message", timeout=30_000)
    return page.inner_text(".lsf-inline-error .lsf-error-message__message")


def close_error_popup(page) -> None:
    """Label Studio opens its global error modal over the form's inline error: close it."""
    popup = page.locator(".lsf-modal-ls").filter(has=page.locator(".lsf-error-message")).filter(
        has_not=page.locator("form"))
    popup.first.wait_for()
    popup.locator('button[aria-label="Close modal"]').first.click()
    popup.first.wait_for(state="detached", timeout=10_000)


@pytest.fixture(scope="module")
def connected(page, label_studio, backend, tmp_path_factory, shots):
    """The wizard's project with the backend connected through the UI: (project id, task ids)."""
    files = photos(tmp_path_factory.mktemp("photos"))
    project_id = create_project_in_wizard(page, label_studio, "first contact", files, CONFIG)
    tasks = api(label_studio, "/api/tasks", project=project_id)["tasks"]
    assert len(tasks) == len(files) and api(label_studio, f"/api/projects/{project_id}")["label_config"] == CONFIG
    open_connect_dialog(page, label_studio, project_id, backend.url)
    assert save_model_form(page).status == 201
    page.wait_for_selector(".lsf-modal-ls form", state="detached")
    page.locator(".lsf-backend-card .lsf-ml__status-label", has_text="Connected").wait_for()
    page.screenshot(path=str(shots / "first_contact_model_connected.png"))
    return project_id, sorted(t["id"] for t in tasks)


def test_connect_alone_pre_labels_every_task_and_sets_the_project_up(connected, label_studio, backend):
    project_id, task_ids = connected

    def predicted():
        tasks = {p["task"] for p in api(label_studio, "/api/predictions", project=project_id)
                 if p["model_version"] == MODEL}
        return tasks == set(task_ids)
    wait_until(predicted, 600, "a prediction for every task imported in the wizard", backend.log)
    predictions = api(label_studio, "/api/predictions", project=project_id)
    assert len(predictions) == len(task_ids)  # exactly one each: Label Studio's own Connect made none
    assert all(0 <= p["score"] <= 1 and isinstance(p["cluster"], int) for p in predictions)
    wait_until(lambda: api(label_studio, f"/api/projects/{project_id}")["model_version"] == MODEL, 60,
               "the project's model version set to the one we serve", backend.log)
    assert api(label_studio, f"/api/projects/{project_id}")["sampling"] == "Uncertainty sampling"
    def finished():  # the job that stored them ends after its last import (the end of job syncs settings again)
        return [j for j in jobs_of(backend, project_id) if j["status"] == "done" and j["result"].get("predicted")]
    wait_until(finished, 60, "the predict job that stored them done", backend.log)
    (job,) = finished()
    assert job["trigger"] == "SETUP" and "person" in job["result"]["not_predicted"]
    health = requests.get(f"{backend.url}/health", timeout=10).json()
    assert health["label_studio"]["state"] == "ok"
    coverage = health["projects"][str(project_id)]["coverage"]
    assert set(coverage["predicted"]) == {"cat", "cup"} and "predicted_values" in coverage["missing"]["person"]


def test_data_manager_shows_our_scores_and_sorts_lowest_first(connected, page, label_studio, shots):
    project_id, task_ids = connected
    scores = {p["task"]: p["score"] for p in api(label_studio, "/api/predictions", project=project_id)}
    page.goto(f"{label_studio.url}/projects/{project_id}/data")
    page.wait_for_selector("[data-testid=table-row]")
    page.locator("button", has_text="Columns").first.click()
    item = page.locator(".lsf-menu-dm__item label", has_text=re.compile(r"^\s*Prediction score\s*$"))
    if not item.locator("input[type=checkbox]").is_checked():
        item.click()
    page.locator("button", has_text="Columns").first.click()
    page.wait_for_selector('.lsf-th[data-id="tasks:predictions_score"]')
    with page.expect_response(lambda r: "/api/tasks" in r.url and "interaction=ordering" in r.url):
        page.locator("button", has_text="Order by").first.click()
        page.locator(".lsf-menu-dm__item", has_text=re.compile(r"^Prediction score$")).click()
    def sorted_rows(descending: bool):
        rows = page.evaluate(ROWS_JS)
        order = [scores[t] for t in rows]
        return sorted(rows) == task_ids and order == sorted(order, reverse=descending)
    wait_until(lambda: sorted_rows(False), 30, "rows sorted by score, lowest first")
    shown = page.evaluate(SCORES_JS)
    assert [round(float(v), 3) for v in shown] == [round(scores[t], 3) for t in page.evaluate(ROWS_JS)], shown
    assert float(shown[0]) == min(scores.values())
    page.mouse.click(700, 800)  # close the Order by menu (it stays open after a choice)
    page.wait_for_timeout(300)
    page.screenshot(path=str(shots / "first_contact_scores_sorted.png"))
    with page.expect_response(lambda r: "/api/tasks" in r.url and "interaction=ordering" in r.url):
        page.click('button[aria-label="Sort descending"]')  # the view sorted the other way for the next test
    wait_until(lambda: sorted_rows(True), 30, "rows sorted by score, highest first")


def test_label_all_tasks_opens_the_lowest_scored_task(connected, page, label_studio, shots):
    project_id, _ = connected
    scores = {p["task"]: p["score"] for p in api(label_studio, "/api/predictions", project=project_id)}
    page.goto(f"{label_studio.url}/projects/{project_id}/data")
    page.wait_for_selector("[data-testid=table-row]")
    with page.expect_response(lambda r: "/api/dm/actions?id=next_task" in r.url) as answer:
        page.locator("button", has_text="Label All Tasks").click()
    opened = labelling_ui_shows_task(page)
    assert opened == min(scores, key=lambda t: (scores[t], t)), (opened, scores, answer.value.json().get("queue"))
    page.wait_for_timeout(1500)  # the pre-label's boxes painted
    page.screenshot(path=str(shots / "first_contact_label_all.png"))


def test_send_test_request_names_the_label_that_cannot_be_pre_labelled(connected, page, label_studio, shots):
    project_id, _ = connected
    page.goto(f"{label_studio.url}/projects/{project_id}/settings/ml")
    assert card_state(page) == "Connected"
    open_card_menu(page, "Send Test Request")
    dialog = page.locator(".lsf-modal-ls", has=page.locator(".lsf-modal-ls__title", has_text="Test Request"))
    with page.expect_response(lambda r: "/predict/test" in r.url):
        dialog.locator("button", has_text="Send Request").click()
    answer = dialog.locator("pre").nth(1)
    page.wait_for_function("el => el.innerText.includes('warnings')", arg=answer.element_handle(), timeout=120_000)
    text = answer.inner_text()
    assert "person" in text and "predicted_values" in text and "learns it once" in text, text
    page.screenshot(path=str(shots / "first_contact_test_request_warning.png"))
    dialog.locator('button[aria-label="Close modal"]').click()


def test_a_config_with_no_predictable_label_connects_and_says_why(page, label_studio, backend, tmp_path_factory,
                                                                   shots):
    files = photos(tmp_path_factory.mktemp("photos-pothole"))[:2]
    project_id = create_project_in_wizard(page, label_studio, "potholes", files, NO_LABEL_CONFIG)
    open_connect_dialog(page, label_studio, project_id, backend.url)
    assert save_model_form(page).status == 201  # Connect does not fail: annotating "pothole" teaches the detector
    page.wait_for_selector(".lsf-modal-ls form", state="detached")
    job = wait_until(lambda: next((j for j in jobs_of(backend, project_id) if j["status"] == "failed"), None), 120,
                     "the pre-labelling job to fail", backend.log)
    assert "no label of this config can be pre-labelled" in job["message"] and '"pothole"' in job["message"]
    time.sleep(max(0.0, job["created_at"] + 10.5 - time.time()))  # past the Connect's grace period
    page.reload()
    page.locator(".lsf-backend-card .lsf-ml__status-label", has_text="Error").wait_for(timeout=30_000)
    open_card_menu(page, "Edit")
    page.wait_for_selector("input[name=url]")
    assert save_model_form(page).status == 400
    message = inline_error(page)
    assert "no label of this config can be pre-labelled" in message and "pothole" in message, message
    close_error_popup(page)
    tall_screenshot(page, shots / "first_contact_no_label_error.png")
    ml = api(label_studio, "/api/ml", project=project_id)[0]
    assert ml["state"] == "ER" and "pothole" in ml["error_message"]


def test_a_wrong_token_is_named_in_health_and_in_the_connect_dialog(page, label_studio, tmp_path_factory, shots):
    wrong = BackendServer(tmp_path_factory.mktemp("wrong-token"), label_studio.url, "f" * 40, PRELOAD_MODELS="false")
    try:
        health = wait_until(lambda: (lambda h: h if h["label_studio"]["state"] != "unknown" else None)(
            requests.get(f"{wrong.url}/health", timeout=10).json()), 30, "the token check", wrong.log)
        assert health["status"] == "UP"  # Label Studio can still reach the backend
        assert health["label_studio"]["state"] == "auth failed", health["label_studio"]
        assert "HTTP 401" in health["label_studio"]["detail"]
        page.goto(f"{wrong.url}/health")
        page.screenshot(path=str(shots / "first_contact_wrong_token_health.png"))
        project_id = create_project_in_wizard(page, label_studio, "wrong token",
                                              photos(tmp_path_factory.mktemp("photos-token"))[:1], CONFIG)
        open_connect_dialog(page, label_studio, project_id, wrong.url)
        assert save_model_form(page).status == 400  # refused, with our reason
        message = inline_error(page)
        assert "auth failed" in message and "LABEL_STUDIO_API_KEY" in message, message
        close_error_popup(page)
        tall_screenshot(page, shots / "first_contact_wrong_token_connect.png")
    finally:
        wrong.stop()
