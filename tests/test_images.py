"""Task image URLs → arrays: URL forms, auth headers, EXIF, limits, SSRF, cache."""

import numpy as np
import pytest

from backend.core.errors import TaskError
from backend.labelstudio.client import LabelStudioConnection
from backend.labelstudio.image_cache import DiskCache
from backend.labelstudio.images import ImageFetcher, ImageLimits
from tests.conftest import huge_png_header, png_bytes

LEGACY = "0123456789abcdef0123456789abcdef01234567"
PAT = "good.header.signature"


def _fetcher(peer, tmp_path, key=LEGACY, allowed=(), max_bytes=10_000_000, cache_mb=5, base=None):
    conn = LabelStudioConnection(peer.url if base is None else base, key)
    limits = ImageLimits(max_bytes=max_bytes, max_pixels=50_000_000, timeout_s=5, allowed_hosts=allowed)
    return ImageFetcher(conn, limits, DiskCache(tmp_path / "cache", cache_mb * 1024 * 1024), 4)


def _gradient(h=40, w=60):
    x = np.linspace(0, 255, w, dtype=np.uint8)
    return np.stack([np.tile(x, (h, 1))] * 3, axis=-1)


@pytest.mark.parametrize("path", ["/data/upload/3/abc-photo.png", "/data/local-files/?d=images/photo.png"])
def test_label_studio_relative_urls_send_legacy_token(peer, tmp_path, path):
    peer.routes[path] = (200, png_bytes(_gradient()), {"Content-Type": "image/png"})
    image = _fetcher(peer, tmp_path).load(path, 1).pixels
    assert image.shape == (40, 60, 3) and image.dtype == np.uint8
    assert peer.requests[-1][1]["Authorization"] == f"Token {LEGACY}"


def test_personal_access_token_is_exchanged_for_bearer(peer, tmp_path):
    peer.routes["/data/upload/1/a.png"] = (200, png_bytes(_gradient()), {})
    peer.routes["/data/upload/1/b.png"] = (200, png_bytes(_gradient()), {})
    fetcher = _fetcher(peer, tmp_path, key=PAT)
    fetcher.load("/data/upload/1/a.png")
    fetcher.load("/data/upload/1/b.png")
    assert [p for p, _ in peer.requests].count("/api/token/refresh/") == 1  # access token reused
    assert peer.requests[-1][1]["Authorization"] == "Bearer access-for-good."


def test_bad_personal_access_token_is_a_clear_error(peer, tmp_path):
    peer.routes["/data/upload/1/a.png"] = (200, png_bytes(_gradient()), {})
    with pytest.raises(Exception, match="personal access token"):
        _fetcher(peer, tmp_path, key="bad.header.signature").load("/data/upload/1/a.png")


def test_exif_orientation_is_applied(peer, tmp_path):
    array = _gradient(40, 60)
    peer.routes["/data/upload/1/rot.jpg"] = (200, png_bytes(array, exif_orientation=6), {})
    image = _fetcher(peer, tmp_path).load("/data/upload/1/rot.jpg").pixels
    assert image.shape == (60, 40, 3)  # rotated 90 degrees as the annotator sees it
    # orientation 6 = rotate 90 clockwise for display: the left column (dark) ends at the top
    assert image[0].mean() < image[-1].mean()


def test_absolute_url_on_allow_list_gets_no_token(peer, tmp_path):
    peer.routes["/imgs/x.png"] = (200, png_bytes(_gradient()), {})
    fetcher = _fetcher(peer, tmp_path, allowed=("127.0.0.1",), base="http://labelstudio.invalid:8080")
    fetcher.load(f"{peer.url}/imgs/x.png")
    assert "Authorization" not in peer.requests[-1][1]


@pytest.mark.parametrize("url,message", [
    ("http://169.254.169.254/latest/meta-data", "neither Label Studio"),
    ("file:///etc/passwd", "unsupported image URL scheme"),
    ("", "no image URL"),
])
def test_urls_refused(peer, tmp_path, url, message):
    with pytest.raises(TaskError, match=message):
        _fetcher(peer, tmp_path).load(url, 1)
    assert peer.requests == []


def test_redirect_off_label_studio_is_refused(peer, tmp_path):
    peer.routes["/data/upload/1/r.png"] = (302, b"", {"Location": "http://10.0.0.1/secret"})
    with pytest.raises(TaskError, match="neither Label Studio"):
        _fetcher(peer, tmp_path).load("/data/upload/1/r.png")


def test_cloud_uri_goes_through_presign_endpoint(peer, tmp_path):
    import base64

    fileuri = base64.urlsafe_b64encode(b"s3://bucket/cat.png").decode()
    peer.routes[f"/tasks/7/presign/?fileuri={fileuri.replace('=', '%3D')}"] = (200, png_bytes(_gradient()), {})
    image = _fetcher(peer, tmp_path).load("s3://bucket/cat.png", 7).pixels
    assert image.shape == (40, 60, 3)


@pytest.mark.parametrize("status,body,message", [
    (404, b"nope", "HTTP 404"),
    (403, b"", "Check LABEL_STUDIO_API_KEY"),
    (200, b"this is not an image", "not a readable image"),
    (200, huge_png_header(30000, 30000), "over MAX_IMAGE_PIXELS"),
])
def test_unusable_images(peer, tmp_path, status, body, message):
    peer.routes["/data/upload/1/bad.png"] = (status, body, {})
    with pytest.raises(TaskError, match=message):
        _fetcher(peer, tmp_path).load("/data/upload/1/bad.png")


def test_byte_cap(peer, tmp_path):
    peer.routes["/data/upload/1/big.png"] = (200, b"x" * 5000, {})
    with pytest.raises(TaskError, match="MAX_IMAGE_BYTES"):
        _fetcher(peer, tmp_path, max_bytes=1000).load("/data/upload/1/big.png")


def test_relative_url_without_label_studio_url(peer, tmp_path):
    with pytest.raises(TaskError, match="set LABEL_STUDIO_URL"):
        _fetcher(peer, tmp_path, base="").load("/data/upload/1/x.png")


def test_cache_hits_and_bound(peer, tmp_path):
    data = png_bytes(np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8))
    for i in range(6):
        peer.routes[f"/data/upload/1/{i}.png"] = (200, data, {})
    fetcher = _fetcher(peer, tmp_path, cache_mb=1)
    fetcher.load("/data/upload/1/0.png")
    fetcher.load("/data/upload/1/0.png")
    assert fetcher.cache.hits == 1 and len(peer.requests) == 1
    for i in range(6):
        fetcher.load(f"/data/upload/1/{i}.png")
    total = sum(p.stat().st_size for p in (tmp_path / "cache").iterdir())
    assert total <= 1024 * 1024


def test_parallel_submit(peer, tmp_path):
    for i in range(8):
        peer.routes[f"/data/upload/1/{i}.png"] = (200, png_bytes(_gradient(10 + i, 20)), {})
    fetcher = _fetcher(peer, tmp_path)
    futures = [fetcher.submit(f"/data/upload/1/{i}.png") for i in range(8)]
    assert [f.result().pixels.shape[0] for f in futures] == [10 + i for i in range(8)]


def test_cache_survives_concurrent_writers(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    cache = DiskCache(tmp_path / "cache", 200_000)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: cache.put(f"k{i}", bytes(30_000)), range(64)))
    files = list((tmp_path / "cache").iterdir())
    assert not [f for f in files if f.suffix == ".part"]
    assert sum(f.stat().st_size for f in files) <= 200_000
