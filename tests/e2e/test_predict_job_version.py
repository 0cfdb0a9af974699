"""One model_version per predict job, against a real Label Studio: `auto` plans a job with SAM 3 (its weights
directory exists, so it looks loadable), the weights fail to load on the first chunk and `auto` hands over to LIME.
Nothing made by LIME is stored by the job planned for SAM 3: that job is superseded and a new job lists the tasks for
the version serving now, so every task ends with exactly one prediction, all of LIME's version, and every job that
reports predicted tasks reports the version they carry (before: the SAM 3 job stored LIME's predictions and reported
them as SAM 3's)."""

from collections import Counter

import pytest
import requests

from tests.e2e.projects import FAST, Project, jobs_of, wait_until
from tests.e2e.servers import BackendServer

pytestmark = pytest.mark.e2e
LIME = "lime-efficientnet-lite0"


def test_a_pipeline_that_hands_over_mid_job_never_mixes_versions(label_studio, tmp_path):
    broken = tmp_path / "sam3-broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")  # a directory: `auto` plans with sam3; loading it fails
    backend = BackendServer(tmp_path / "backend", label_studio.url, label_studio.token, PIPELINE="auto",
                            PRELOAD_MODELS="false", SAM3_MODEL=str(broken),
                            DETECTOR_MODEL=str(tmp_path / "no-grounding-dino"))
    try:
        project = Project(label_studio, backend, "hand-over", FAST)
        project.upload(12)

        def settled():
            jobs = jobs_of(backend, project.id)
            idle = jobs and all(j["status"] not in ("pending", "running") for j in jobs)
            return idle and len({p["task"] for p in project.predictions()}) == 12
        wait_until(settled, 300, "one prediction per task and no job left", backend.log)
        jobs = jobs_of(backend, project.id)
        predictions = project.predictions()
        settings = requests.get(f"{label_studio.url}/api/projects/{project.id}", headers=project.headers,
                                timeout=30).json()
    finally:
        backend.stop()
    per_task = Counter(p["task"] for p in predictions)
    assert len(per_task) == 12 and set(per_task.values()) == {1}, per_task
    assert {p["model_version"] for p in predictions} == {LIME}
    assert settings["model_version"] == LIME  # the Data Manager shows the predictions that exist
    assert all(j["result"]["model_version"] == LIME for j in jobs if j["result"].get("predicted")), jobs
    superseded = [j for j in jobs if j["result"].get("superseded_by")]
    assert superseded, jobs
    assert all(j["result"]["model_version"] == "sam3-sam3-broken" and j["result"]["superseded_by"] == LIME
               and j["result"]["next_job"] for j in superseded), superseded
    assert any(j["result"].get("model_version") == LIME and j["result"]["predicted"] for j in jobs), jobs
