"""URLs an outside user can put in a task, /setup or a redirect: what the HTTP client would connect to, and that
Label Studio's token never reaches any other server (a loopback "attacker" records every request)."""

import base64

import numpy as np
import pytest
import requests
from urllib3.util import parse_url

from backend.core.errors import BadRequest, TaskError
from backend.labelstudio.client import LabelStudioConnection
from backend.labelstudio.image_cache import DiskCache
from backend.labelstudio.images import ImageFetcher, ImageLimits
from backend.labelstudio.urls import UnsafeUrl, parse_http_url
from backend.service.app import create_app
from tests.conftest import FilePeer, png_bytes

TOKEN = "0123456789abcdef0123456789abcdef01234567"
CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
          '<Label value="cat"/></RectangleLabels></View>')


# (url, what the client connects to as "host:port", or None when the URL is refused)
@pytest.mark.parametrize("url,connects_to", [
    ("http://127.0.0.1:9301/data/upload/1/a.png", "127.0.0.1:9301"),
    ("HTTP://Example.COM/a.png", "example.com:80"),
    ("https://example.com/a.png?x=1#frag", "example.com:443"),
    ("http://[::1]:8080/a.png", "[::1]:8080"),
    ("http://2130706433/a.png", "2130706433:80"),  # decimal IPv4: a host string of its own, never Label Studio's
    ("http://127.0.0.1:9302\\@127.0.0.1:9301/steal.png", None),  # requests would connect to :9302
    ("http://127.0.0.1:9302/\\@127.0.0.1:9301/steal.png", None),
    ("http://user:pass@127.0.0.1:9301/a.png", None),
    ("http://127.0.0.1:9301@127.0.0.1:9302/a.png", None),
    ("http://127.0.0.1:9302%5C@127.0.0.1:9301/a.png", None),
    ("http://127.0.0.1:9302\t/a.png", None),
    ("http://127.0.0.1:9302\n.example.com/a.png", None),
    ("http://127.0.0.1 :9301/a.png", None),
    ("http://ex%2eample.com/a.png", None),
    ("http://127.0.0.1:99999/a.png", None),
    ("http:///a.png", None),
    ("//127.0.0.1:9301/a.png", None),
    ("file:///etc/passwd", None),
    ("ftp://127.0.0.1/a.png", None),
    ("gopher://127.0.0.1:9301/_GET", None),
    ("javascript:alert(1)", None),
    ("http://" + "a" * 9000 + ".com/", None),
])
def test_parse_http_url_reads_what_requests_connects_to(url, connects_to):
    if connects_to is None:
        with pytest.raises(UnsafeUrl):
            parse_http_url(url)
        return
    parsed = parse_http_url(url)
    assert parsed.netloc == connects_to
    # the canonical string handed to requests is connected to exactly there
    prepared = parse_url(requests.Request("GET", parsed.url).prepare().url)
    assert f"{prepared.host}:{prepared.port}" == connects_to


@pytest.fixture()
def servers():
    """Label Studio (a loopback peer serving one image) and an attacker on another port, recording requests."""
    label_studio, attacker = FilePeer(), FilePeer()
    image = png_bytes(np.full((20, 30, 3), 128, np.uint8))
    for peer in (label_studio, attacker):
        peer.routes["/steal.png"] = (200, image, {})
        peer.routes["/data/upload/1/a.png"] = (200, image, {})
    yield label_studio, attacker
    label_studio.close()
    attacker.close()


def _fetcher(tmp_path, label_studio_url, allowed=()):
    connection = LabelStudioConnection(label_studio_url, TOKEN)
    limits = ImageLimits(10_000_000, 50_000_000, 5, allowed)
    return ImageFetcher(connection, limits, DiskCache(tmp_path / "cache", 0), 2)


def _hostile_urls(ls: str, bad: str) -> list[str]:
    """Task image URLs aiming at the attacker `bad` ("127.0.0.1:port") while naming Label Studio `ls`."""
    ls_port, bad_port = ls.rsplit(":", 1)[1], bad.rsplit(":", 1)[1]
    return [
        f"http://{bad}\\@{ls}/steal.png", f"http://{bad}/\\@{ls}/steal.png", f"http://{bad}%5C@{ls}/steal.png",
        f"http://{ls}@{bad}/steal.png", f"http://x:y@{bad}/steal.png", f"http://{bad}#@{ls}/steal.png",
        f"http://{bad}?@{ls}/steal.png", f"http://{bad}\t/steal.png", f"http://localhost:{bad_port}/steal.png",
        f"http://2130706433:{bad_port}/steal.png", f"http://[::ffff:127.0.0.1]:{bad_port}/steal.png",
        f"http://127.1:{bad_port}/steal.png", f"http://0x7f.0.0.1:{bad_port}/steal.png", f"http://{bad}/steal.png",
        f"  http://{bad}/steal.png", f"http://127.0.0.1:{ls_port}.{bad_port}/steal.png",
    ]


def test_no_hostile_task_url_gets_the_token_to_the_attacker(servers, tmp_path):
    label_studio, attacker = servers
    ls, bad = label_studio.url.split("//")[1], attacker.url.split("//")[1]
    fetcher = _fetcher(tmp_path, label_studio.url)
    for url in _hostile_urls(ls, bad):
        with pytest.raises(TaskError):
            fetcher.load(url, 1)
    assert attacker.requests == []  # not even a request without the token


def test_allowed_other_host_never_gets_the_token(servers, tmp_path):
    label_studio, attacker = servers
    bad = attacker.url.split("//")[1]
    fetcher = _fetcher(tmp_path, label_studio.url, allowed=(bad,))
    assert fetcher.load(f"{attacker.url}/steal.png", 1).pixels.shape == (20, 30, 3)
    assert attacker.requests and all("Authorization" not in headers for _, headers in attacker.requests)


@pytest.mark.parametrize("location", [
    "{bad}/steal.png", "http://{bad_hostport}\\@{ls_hostport}/steal.png", "//{bad_hostport}/steal.png",
    "http://x:y@{bad_hostport}/steal.png",
])
def test_redirects_to_the_attacker_are_refused(servers, tmp_path, location):
    label_studio, attacker = servers
    target = location.format(bad=attacker.url, bad_hostport=attacker.url.split("//")[1],
                             ls_hostport=label_studio.url.split("//")[1])
    label_studio.routes["/data/upload/1/r.png"] = (302, b"", {"Location": target})
    with pytest.raises(TaskError, match="neither Label Studio|refused"):
        _fetcher(tmp_path, label_studio.url).load("/data/upload/1/r.png", 1)
    assert attacker.requests == []


def test_redirect_to_an_allowed_host_drops_the_token(servers, tmp_path):
    label_studio, attacker = servers
    label_studio.routes["/data/upload/1/r.png"] = (302, b"", {"Location": f"{attacker.url}/steal.png"})
    fetcher = _fetcher(tmp_path, label_studio.url, allowed=(attacker.url.split("//")[1],))
    fetcher.load("/data/upload/1/r.png", 1)
    assert label_studio.requests[0][1]["Authorization"] == f"Token {TOKEN}"
    assert [path for path, _ in attacker.requests] == ["/steal.png"]
    assert "Authorization" not in attacker.requests[0][1]


def test_presign_redirect_to_storage_goes_without_the_token(servers, tmp_path):
    label_studio, storage = servers
    fileuri = base64.urlsafe_b64encode(b"s3://bucket/a.png").decode().replace("=", "%3D")
    label_studio.routes[f"/tasks/4/presign/?fileuri={fileuri}"] = (303, b"", {"Location": f"{storage.url}/steal.png"})
    _fetcher(tmp_path, label_studio.url).load("s3://bucket/a.png", 4)
    assert [path for path, _ in storage.requests] == ["/steal.png"]
    assert "Authorization" not in storage.requests[0][1]


def test_redirect_loop_is_refused(servers, tmp_path):
    label_studio, _ = servers
    label_studio.routes["/data/upload/1/loop.png"] = (302, b"", {"Location": "/data/upload/1/loop.png"})
    with pytest.raises(TaskError, match="redirected more than"):
        _fetcher(tmp_path, label_studio.url).load("/data/upload/1/loop.png", 1)


@pytest.mark.parametrize("configured,basic_auth,expected", [
    ("ls", False, "ls"),  # LABEL_STUDIO_URL always wins
    ("ls", True, "ls"),
    ("", False, None),  # unset, unauthenticated /setup: the hostname is ignored
    ("", True, "attacker"),  # unset, basic auth on: the authenticated caller names Label Studio
])
def test_setup_hostname_rule(servers, make_settings, configured, basic_auth, expected):
    label_studio, attacker = servers
    urls = {"ls": label_studio.url, "attacker": attacker.url, "": ""}
    auth = {"basic_auth_user": "ls", "basic_auth_pass": "pw"} if basic_auth else {}
    app = create_app(make_settings(label_studio_url=urls[configured], label_studio_api_key=TOKEN, run_jobs=False,
                                   **auth))
    client = app.test_client()
    headers = {"Authorization": "Basic bHM6cHc="} if basic_auth else {}  # ls:pw
    setup = {"project": 7, "schema": CONFIG, "hostname": attacker.url, "access_token": "f" * 40}
    assert client.post("/setup", json=setup, headers=headers).status_code == 200
    runtime = app.extensions["runtime"]
    assert runtime.context.connection.base_url == (parse_http_url(urls[expected]).base if expected else "")
    if expected is None:
        with pytest.raises(TaskError, match="set LABEL_STUDIO_URL"):
            runtime.context.images.load("/data/upload/1/a.png", 1)
    else:
        runtime.context.images.load("/data/upload/1/a.png", 1)
    # a token only ever goes to the server the settings (or an authenticated /setup) named
    if expected != "attacker":
        assert all("Authorization" not in h for _, h in attacker.requests) and not attacker.requests


@pytest.mark.parametrize("hostname", [123, {"a": 1}, ["http://x"], "file:///etc", "ftp://ls:21", "http://a@ls:8080",
                                      "http://ls:8080/?next=http://x", "http://ls\\@x/", "javascript:alert(1)"])
def test_setup_hostname_form_is_checked(make_settings, hostname):
    client = create_app(make_settings(run_jobs=False)).test_client()
    response = client.post("/setup", json={"project": 7, "schema": CONFIG, "hostname": hostname})
    assert response.status_code == 400 and "hostname" in response.get_json()["error"]


def test_connection_refuses_bad_api_paths_and_urls():
    with pytest.raises(BadRequest, match="LABEL_STUDIO_URL"):
        LabelStudioConnection("http://u:p@ls:8080", TOKEN)
    connection = LabelStudioConnection("http://ls:8080/prefix/", TOKEN)
    assert connection.api_url("/api/projects/1").url == "http://ls:8080/prefix/api/projects/1"
    with pytest.raises(BadRequest):
        connection.api_url("api/projects/1")
    with pytest.raises(BadRequest):
        connection.api_url("/x\\@evil/")
