"""A request or job resolves its pipeline once (`PipelineSelector.resolve`), with its models loaded, and everything
it makes carries that pipeline's model_version: `auto` hands over while resolving, never while running, and a predict
job's part that finds another version serving than the one planned stores nothing and supersedes the job."""

import pytest

from backend.core.errors import ModelUnavailable
from backend.labelstudio.config import parse_label_config
from tests.conftest import png_bytes

LIME = "lime-efficientnet-lite0"
CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
          '<Label value="cat"/></RectangleLabels></View>')


@pytest.fixture()
def broken_sam3(tmp_path):
    """A SAM 3 directory that looks loadable (`auto` would pick it) but whose weights do not load."""
    path = tmp_path / "sam3-broken"
    path.mkdir()
    (path / "config.json").write_text("{}")
    return path


@pytest.fixture()
def context(make_settings, broken_sam3, tmp_path):
    from backend.jobs.context import JobContext

    return JobContext.build(make_settings(sam3_model=str(broken_sam3), detector_model=str(tmp_path / "none")))


def test_resolving_hands_over_before_anything_runs(context):
    ontology = parse_label_config(CONFIG)
    params = context.project_params(None).predict
    assert context.selector.for_project(None, params, ontology).name == "sam3"  # looks loadable: nothing loaded
    assert not context.models.sam3.failed
    resolved = context.selector.resolve(None, params, ontology)
    assert resolved.model_version == LIME and context.models.sam3.failed
    assert context.selector.for_project(None, params, ontology).name == "lime"  # the failure is remembered


def test_running_a_pipeline_never_hands_over(context):
    import numpy as np

    sam3 = context.selector.pipelines["sam3"]
    with pytest.raises(ModelUnavailable, match="sam3"):
        context.selector.run(sam3, [np.zeros((32, 32, 3), np.uint8)], parse_label_config(CONFIG),
                             context.project_params(None).predict)


def test_every_prediction_of_a_request_carries_the_version_that_made_it(make_settings, broken_sam3, tmp_path, peer):
    import numpy as np
    from backend.service.app import create_app

    peer.routes["/data/upload/1/a.png"] = (200, png_bytes(np.full((40, 60, 3), 128, np.uint8)), {})
    app = create_app(make_settings(sam3_model=str(broken_sam3), detector_model=str(tmp_path / "none"),
                                   label_studio_url=peer.url)).test_client()
    assert app.get("/health").get_json()["pipeline"] == "sam3"
    tasks = [{"id": i, "data": {"image": "/data/upload/1/a.png"}} for i in (1, 2)]
    body = app.post("/predict", json={"tasks": tasks, "label_config": CONFIG,
                                      "params": {}}).get_json()
    assert body["model_version"] == LIME
    assert [r["model_version"] for r in body["results"]] == [LIME, LIME] and all("result" in r for r in body["results"])


def test_a_part_that_finds_another_version_serving_stores_nothing_and_supersedes_the_job(context):
    """Planned for SAM 3 (say, by a process where its weights loaded); in this process they fail, so LIME would
    serve: the part stores nothing (Label Studio is never called: no URL is set), its job is marked superseded and
    the parts not started are cancelled."""
    from backend.jobs.prediction import run_part, summary

    context.projects.save(1, {}, CONFIG)
    job_id, _ = context.jobs.enqueue(1, "predict", "API")
    context.parts.plan(job_id, [[{"id": 1, "data": {"image": "/a.png"}}], [{"id": 2, "data": {"image": "/b.png"}}]])
    context.jobs.set_plan(job_id, {"model_version": "sam3-sam3-broken", "listed": 2})
    job = context.jobs.get(job_id)
    run_part(context, job, context.parts.claim(job_id), stop=None)
    result = summary(context, context.jobs.get(job_id))
    assert result["model_version"] == "sam3-sam3-broken" and result["superseded_by"] == LIME
    assert result["predicted"] == 0 and context.parts.summary(job_id)["parts"] == {"cancelled": 2}


def test_auto_hands_over_when_the_projects_own_classifier_does_not_load(context):
    """A project's trained classifier whose files are broken: `auto` serves the zero-shot pick instead (LIME over
    ImageNet here, SAM 3 failing too), as it did before pipelines were resolved once; `lime` named explicitly keeps
    the project's classifier and says why it cannot run."""
    from dataclasses import replace

    with context.registry.staging(1, "classifier") as staging:
        (staging / "classifier.pt").write_bytes(b"not a checkpoint")
        version = context.registry.commit(staging, 1, "classifier", {})
    context.registry.activate(1, "classifier", version.name)
    ontology = parse_label_config(CONFIG)
    params = context.project_params(None).predict
    assert context.selector.resolve(1, params, ontology).model_version == LIME
    assert context.selector.for_project(1, params, ontology).model_version == LIME  # the failure is remembered
    with pytest.raises(ModelUnavailable, match="project1-classifier-v0001"):
        context.selector.resolve(1, replace(params, pipeline="lime"), ontology)
