import os

import pytest

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
