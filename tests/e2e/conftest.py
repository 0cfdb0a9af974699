import os
from pathlib import Path

import pytest

from tests.e2e.browser import ARGS, chromium
from tests.e2e.servers import BackendServer, LabelStudioServer, label_studio_binary
from tests.tiny_models import save_grounding_dino, save_sam


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    binary = label_studio_binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("Label Studio is not installed: run `make test` (it installs .venv-ls)")
        pytest.skip("Label Studio not installed (make install-ls)")
    server = LabelStudioServer(binary, tmp_path_factory.mktemp("label-studio"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def backend(label_studio, tmp_path_factory):
    server = BackendServer(tmp_path_factory.mktemp("backend"), label_studio.url, label_studio.token)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def grounded_backend(label_studio, tmp_path_factory):
    """A second backend serving the grounded pipeline with tiny random-init models from local directories."""
    models = tmp_path_factory.mktemp("tiny-models")
    detector, sam = save_grounding_dino(models / "grounding-dino"), save_sam(models / "sam")
    server = BackendServer(tmp_path_factory.mktemp("grounded-backend"), label_studio.url, label_studio.token,
                           PIPELINE="grounded", DETECTOR_MODEL=str(detector), SAM_MODEL=str(sam))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    binary = chromium()
    if binary is None:
        pytest.skip("no Chromium installed (Debian: apt-get install chromium; `make test` does it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[test])")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=binary, headless=True, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Where screenshots go: `$SCREENSHOTS_DIR` (the README's docs/screenshots) or the test's tmp dir."""
    target = Path(os.environ.get("SCREENSHOTS_DIR") or tmp_path_factory.mktemp("screenshots"))
    target.mkdir(parents=True, exist_ok=True)
    return target
