"""A real browser for the end-to-end tests: Debian's Chromium driven by Playwright (Playwright's own browser
download does not work offline; the `browser` and `shots` fixtures are in `tests/e2e/conftest.py`), logged into
the test Label Studio, and the selectors of Label Studio 1.23's UI that the tests rely on (found by driving it:
many buttons' aria-labels differ from their visible text)."""

import os
import shutil

from tests.e2e.servers import EMAIL, PASSWORD

ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def chromium() -> str | None:
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def login(page, label_studio) -> None:
    page.goto(f"{label_studio.url}/user/login/")
    page.fill("input[name=email]", EMAIL)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url(lambda url: "/user/login" not in url, timeout=30_000)


def labelling_ui_shows_task(page, task_id: int | None = None, timeout_ms: int = 120_000) -> int:
    """Wait for Label Studio's labelling UI to show a task (task `task_id` when given); returns its id."""
    page.wait_for_function(
        "id => { const s = window.Htx || (window.LabelStudio && window.LabelStudio.store); "
        "return s && s.task && (id === null || Number(s.task.id) === id) && s.annotationStore && "
        "s.annotationStore.selected; }", arg=task_id, timeout=timeout_ms)
    return page.evaluate("() => Number((window.Htx || window.LabelStudio.store).task.id)")

