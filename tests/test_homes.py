"""Each piece of shared knowledge has one home: the `model_version` format of trained versions (the registry), the
`MODEL_DIR` layout (`backend.core.layout`), the set-up check (`ProjectStore.set_up`). Table-driven."""

from pathlib import Path

import pytest

from backend.core.errors import ProjectNotSetUp
from backend.core.layout import ModelDir
from backend.registry.versions import Registry, trained_versions, untrained_version, version_name
from backend.store.database import Database
from backend.store.projects import ProjectStore


@pytest.mark.parametrize("model_version,project_id,found", [
    ("project3-detector-v0002", 3, [("detector", "v0002")]),
    ("project3-classifier-v0010", 3, [("classifier", "v0010")]),
    ("project3-detector-v0002", 4, []),  # another project's version
    ("project13-detector-v0002", 3, []),  # not project 3's (the id is read whole)
    ("lime-efficientnet-lite0", 3, []),  # zero-shot
    ("project3-detector-untrained", 3, []),
    ("lime-project3-classifier-v0001", 3, [("classifier", "v0001")]),  # LIME over a project classifier
])
def test_trained_versions_read_what_version_name_writes(model_version, project_id, found):
    assert trained_versions(model_version, project_id) == found
    for kind, name in found:
        assert version_name(project_id, kind, name) in model_version


def test_a_committed_version_carries_the_registry_format(tmp_path):
    registry = Registry(tmp_path)
    with registry.staging(7, "detector") as staging:
        version = registry.commit(staging, 7, "detector", {"ok": True})
    assert version.model_version == version_name(7, "detector", version.name) == "project7-detector-v0001"
    assert trained_versions(version.model_version, 7) == [("detector", "v0001")]
    assert version.path.parent.parent == ModelDir(tmp_path).trained(7, "detector")
    assert untrained_version(7) == "project7-detector-untrained" and trained_versions(untrained_version(7), 7) == []


@pytest.mark.parametrize("path,expected", [
    (lambda d: d.state_file, "backend.sqlite"),
    (lambda d: d.secret("webhook_secret"), "webhook_secret"),
    (lambda d: d.image_cache, "cache/images"),
    (lambda d: d.video_cache, "cache/videos"),
    (lambda d: d.onnx_cache, "cache/onnx"),
    (lambda d: d.classifier_output(5), "classifiers/project-5"),
    (lambda d: d.calibration(5), "projects/5/calibration.json"),
    (lambda d: d.clusters(5), "projects/5/clusters.npz"),
    (lambda d: d.review_report(5), "projects/5/review.json"),
    (lambda d: d.review_page(5), "projects/5/review.html"),
    (lambda d: d.trained(5, "detector"), "projects/5/detector"),
])
def test_model_dir_layout(path, expected):
    """The paths existing deployments hold: moving one would orphan what they stored."""
    assert path(ModelDir(Path("/m"))) == Path("/m") / expected


def test_the_modules_that_store_files_ask_the_layout(tmp_path):
    from backend.core.settings import Settings
    from backend.jobs.calibration import calibration_path
    from backend.jobs.review import page_path, report_path

    layout = Settings(model_dir=tmp_path).layout
    assert calibration_path(tmp_path, 2) == layout.calibration(2)
    assert report_path(tmp_path, 2) == layout.review_report(2) and page_path(tmp_path, 2) == layout.review_page(2)


@pytest.mark.parametrize("saved,project_id,ok", [
    ({1: "<View/>"}, 1, True),
    ({1: "<View/>"}, 2, False),  # never set up
    ({1: ""}, 1, False),  # set up without a label config
])
def test_one_set_up_check_with_one_error(tmp_path, saved, project_id, ok):
    projects = ProjectStore(Database(tmp_path / "s.sqlite"))
    for pid, config in saved.items():
        projects.save(pid, {}, config)
    if ok:
        assert projects.set_up(project_id).label_config == saved[project_id]
    else:
        with pytest.raises(ProjectNotSetUp, match=f"project {project_id} is not set up here") as raised:
            projects.set_up(project_id)
        assert raised.value.status == 404
