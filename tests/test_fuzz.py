"""Schema-driven fuzzing: schemathesis generates valid and invalid requests for every operation of the OpenAPI
description the service serves (`/openapi.json`) and the test fails on any 5xx. Bounded for CI (examples per
operation below); the LIME pipeline is real but tiny, image URLs point at a loopback Label Studio."""

import numpy as np
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode

from backend.core.settings import Settings
from backend.service.app import create_app
from tests.conftest import FilePeer, png_bytes

EXAMPLES_PER_OPERATION = 40

_peer = FilePeer()
_peer.routes["/data/upload/1/a.png"] = (200, png_bytes(np.full((32, 48, 3), 100, np.uint8)), {})


def _app(tmp):
    app = create_app(Settings(model_dir=tmp, preload_models=False, device="cpu", run_jobs=False,
                              label_studio_url=_peer.url, label_studio_api_key="k" * 40))
    client = app.test_client()
    setup = {"project": 1, "schema": '<View><Image name="image" value="$image"/><RectangleLabels name="box" '
             'toName="image"><Label value="cat"/></RectangleLabels></View>',
             "extra_params": {"num_samples": 16, "superpixels": 8}}
    assert client.post("/setup", json=setup).status_code == 200
    return app


def _schema():
    import tempfile
    from pathlib import Path

    schema = schemathesis.openapi.from_wsgi("/openapi.json", _app(Path(tempfile.mkdtemp(prefix="fuzz-"))))
    schema.config.generation.update(modes=list(GenerationMode))
    return schema


schema = _schema()


def _fuzz_test(operation):
    """One test function per operation (`test_no_route_answers_5xx_get__health`, …): schemathesis gives the tests
    of one parametrized function a single node id, which pytest-xdist's file scheduling (`make test`) would run once."""
    def test(case):
        response = case.call()
        assert response.status_code < 500 or response.status_code == 503, \
            f"{case.operation.label} → {response.status_code}: {response.text[:500]}"
        if response.status_code >= 400 and response.headers.get("Content-Type", "").startswith("application/json"):
            assert response.json()["error"]

    test.__name__ = "test_no_route_answers_5xx_" + "".join(c if c.isalnum() else "_" for c in operation.label.lower())
    bounded = settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck))
    return schema.include(method=operation.method, path=operation.path).parametrize()(bounded(test))


for _operation in (result.ok() for result in schema.get_all_operations()):
    _test = _fuzz_test(_operation)
    globals()[_test.__name__] = _test


def test_the_spec_lists_every_route():
    import tempfile
    from pathlib import Path

    served = _app(Path(tempfile.mkdtemp(prefix="spec-")))
    spec = served.test_client().get("/openapi.json").get_json()
    rules = {r.rule.replace("<", "{").replace(">", "}") for r in served.url_map.iter_rules() if r.endpoint != "static"}
    assert rules - {"/", "/openapi.json"} <= set(spec["paths"]), rules - set(spec["paths"])
