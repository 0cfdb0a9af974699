"""One model_version per predict job, against a real Label Studio: `auto` would pick SAM 3 (its weights directory
exists, so it looks loadable) but its weights fail to load. The job resolves its pipeline once, loading it, so `auto`
hands over to LIME before anything is listed or stored: every task ends with exactly one prediction, all of LIME's
version, and every job reports the version its predictions carry. (Before: the job planned for SAM 3, LIME took over
on the first chunk, and the SAM 3 job stored LIME's predictions and reported them as SAM 3's; a part that still finds
another version serving than planned is superseded: tests/test_selection.py.)"""

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
    assert all(j["result"]["model_version"] == LIME for j in jobs if j["result"].get("model_version")), jobs
    assert not any(j["result"].get("superseded_by") for j in jobs), jobs  # never planned for what cannot load
    assert any(j["result"].get("model_version") == LIME and j["result"]["predicted"] for j in jobs), jobs
