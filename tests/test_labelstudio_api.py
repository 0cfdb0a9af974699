"""The Label Studio reads that find the tasks annotated since a training read its project
(`backend.labelstudio.api.recently_annotated_ids`, `export_tasks(ids=...)`), against the loopback peer's stand-in for
Label Studio's Data Manager listing and export (tests/conftest.py `FilePeer.derived`; the real Label Studio run is in
tests/e2e/test_label_studio_api.py)."""

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from backend.labelstudio import api
from backend.labelstudio.client import LabelStudioConnection

EXPORT = "/api/projects/3/export?exportType=JSON"


def _task(task_id, created_at=None, cancelled=False):
    annotations = [{"id": 100 + task_id, "result": [], "was_cancelled": cancelled,
                    **({"created_at": created_at} if created_at else {})}] if created_at or cancelled else []
    return {"id": task_id, "data": {"image": f"/data/upload/{task_id}.png"}, "annotations": annotations}


# tasks 1-6: 1, 2, 3 annotated at 10:00 / 10:03 / 10:01, 4 only skipped, 5 not annotated, 6 annotated at 10:02
TASKS = [_task(1, "2026-12-07T10:00:00Z"), _task(2, "2026-12-07T10:03:00Z"), _task(3, "2026-12-07T10:01:00Z"),
         _task(4, cancelled=True), _task(5), _task(6, "2026-12-07T10:02:00Z")]


@pytest.mark.parametrize("exclude,limit,page_size,expected,pages", [
    (set(), 16, 50, [2, 6, 3, 1], 1),  # most recently completed first; skipped and unannotated tasks left out
    ({2, 3}, 16, 50, [6, 1], 1),  # the tasks a training already read are left out
    (set(), 2, 50, [2, 6], 1),  # the limit
    ({2}, 2, 1, [6, 3], 3),  # one task a page: the reads stop at the page that reaches the limit
    ({1, 2, 3, 6}, 16, 2, [], 2),  # nothing new: every page read once
    (set(), 0, 50, [], 0),
])
def test_recently_annotated_ids(peer, monkeypatch, exclude, limit, page_size, expected, pages):
    peer.routes[EXPORT] = (200, json.dumps(TASKS).encode(), {})
    monkeypatch.setattr(api, "RECENT_PAGE_SIZE", page_size)
    connection = LabelStudioConnection(peer.url, "secret")
    assert api.recently_annotated_ids(connection, 3, exclude, limit) == expected
    read = [int(parse_qs(urlsplit(path).query)["page"][0]) for path, _ in peer.requests
            if path.startswith("/api/tasks?")]
    assert read == list(range(1, pages + 1))


@pytest.mark.parametrize("ids,expected,requests", [
    ([6, 2], [2, 6], 1),
    ([5], [], 1),  # not annotated: Label Studio's export leaves it out (the peer's export holds annotated tasks only)
    ([], [], 0),  # no ids: nothing asked (an empty `ids[]` would export every task)
])
def test_export_by_ids(peer, ids, expected, requests):
    annotated = [t for t in TASKS if t["annotations"]]
    peer.routes[EXPORT] = (200, json.dumps(annotated).encode(), {})
    connection = LabelStudioConnection(peer.url, "secret")
    assert [t["id"] for t in api.export_tasks(connection, 3, ids=ids)] == expected
    asked = [path for path, _ in peer.requests if path.startswith("/api/projects/3/export")]
    assert len(asked) == requests and all("ids%5B%5D=" in path for path in asked)
