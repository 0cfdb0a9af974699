import os

import pytest

from tests.e2e.servers import BackendServer, LabelStudioServer, label_studio_binary


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
