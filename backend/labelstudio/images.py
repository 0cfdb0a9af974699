"""Task image URL → `LoadedImage` (RGB uint8 at working size + the original size), as the annotator sees it.

URL forms: `/data/upload/...` and `/data/local-files/?d=...` (relative to Label Studio), absolute http(s) URLs,
and cloud URIs (s3://, gs://, azure-blob://) through Label Studio's task presign endpoint.

Safety: every URL (and every redirect target) goes through one parser (`backend.labelstudio.urls`) whose result
is exactly what the HTTP client connects to; only Label Studio's own origin and `ALLOWED_IMAGE_HOSTS` are
fetched, and Label Studio's token is attached only for Label Studio's origin. Bytes are capped while streaming,
pixels before decoding, and the whole download (redirects included) must finish within `DOWNLOAD_TIMEOUT_S`.
"""

from __future__ import annotations

import base64
import re
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urljoin, urlsplit

import requests

from backend.core.errors import TaskError
from backend.core.settings import Settings
from backend.labelstudio.client import LabelStudioConnection, failure_reason, http_session
from backend.labelstudio.decode import DecodeBudget, LoadedImage, decode_image
from backend.labelstudio.image_cache import DiskCache
from backend.labelstudio.urls import HttpUrl, UnsafeUrl, parse_http_url

CLOUD_SCHEMES = ("s3", "gs", "azure-blob", "azure-spi")
MAX_REDIRECTS = 3
CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class ImageLimits:
    """max_bytes per image download; max_pixels per image (checked before decoding); timeout_s for a whole image
    download (redirects included); allowed_hosts: "host" or "host:port" entries besides Label Studio; max_side: the
    working size (longer side in pixels, 0 = keep the original size); max_video_bytes, video_timeout_s: the same
    bounds for a video streamed to disk."""

    max_bytes: int
    max_pixels: int
    timeout_s: float
    allowed_hosts: tuple[str, ...] = ()
    max_side: int = 0
    max_video_bytes: int = 2 * 1024**3
    video_timeout_s: float = 600.0


class ImageFetcher:
    """Downloads, caches and decodes task images; one instance per worker process."""

    def __init__(self, connection: LabelStudioConnection, limits: ImageLimits, cache: DiskCache,
                 download_workers: int = 8, session: requests.Session | None = None):
        self.connection = connection
        self.limits = limits
        self.cache = cache
        self.budget = DecodeBudget(limits.max_pixels)
        self._session = session or http_session()
        self._pool = ThreadPoolExecutor(max_workers=download_workers, thread_name_prefix="image-download")

    def submit(self, url: str, task_id: int | None = None) -> "Future[LoadedImage]":
        """Start loading one image in the download pool; the future raises `TaskError` on failure."""
        return self._pool.submit(self.load, url, task_id)

    def load(self, url: str, task_id: int | None = None) -> LoadedImage:
        """The image at `url` at working size; raises `TaskError` with the reason."""
        target = self.resolve(url, task_id)
        data = self.cache.get(target.url)
        if data is None:
            data = self.download(target, presigned=_is_cloud(url))
            image = decode_image(data, self.limits.max_pixels, self.limits.max_side, url, self.budget)
            self.cache.put(target.url, data)
            return image
        return decode_image(data, self.limits.max_pixels, self.limits.max_side, url, self.budget)

    # -- URL handling ---------------------------------------------------------------------------

    def resolve(self, url: object, task_id: int | None) -> HttpUrl:
        """The URL to fetch; relative URLs are Label Studio's, cloud URIs become the task's presign endpoint."""
        if not isinstance(url, str) or not url.strip():
            raise TaskError("task has no image URL")
        url = url.strip()
        scheme = urlsplit(url).scheme.lower() if "\\" not in url else ""
        base = self.connection.base_url
        if scheme in CLOUD_SCHEMES:
            if not base or task_id is None:
                raise TaskError(f"cannot fetch {url[:200]!r}: cloud storage URLs need LABEL_STUDIO_URL and a task id")
            fileuri = base64.urlsafe_b64encode(url.encode()).decode()
            return self._parse(f"{base}/tasks/{int(task_id)}/presign/?fileuri={quote(fileuri)}")
        if scheme in ("http", "https"):
            return self._parse(url)
        if scheme:
            raise TaskError(f"unsupported image URL scheme {scheme!r} in {url[:200]!r}")
        if url.startswith("//"):
            raise TaskError(f"image URL {url[:200]!r} has no scheme")
        if not base:
            raise TaskError(f"image URL {url[:200]!r} is relative; set LABEL_STUDIO_URL so it can be fetched")
        return self._parse(urljoin(base + "/", url.lstrip("/")))

    @staticmethod
    def _parse(url: str) -> HttpUrl:
        try:
            return parse_http_url(url)
        except UnsafeUrl as exc:
            raise TaskError(f"image URL refused: {exc}") from None

    def is_allowed(self, url: HttpUrl) -> bool:
        """Label Studio's own origin, or a host (or host:port) listed in ALLOWED_IMAGE_HOSTS."""
        allowed = self.limits.allowed_hosts
        return self.connection.is_label_studio(url) or url.host in allowed or url.netloc in allowed

    def download(self, target: HttpUrl, presigned: bool = False) -> bytes:
        """Bytes at `target` (at most `max_bytes`, within `timeout_s`); see `stream`."""
        chunks: list[bytes] = []
        self.stream(target, chunks.append, self.limits.max_bytes, self.limits.timeout_s, presigned)
        return b"".join(chunks)

    def fetch_video(self, url: str, task_id: int | None, directory: Path) -> Path:
        """A task's video streamed to a new file in `directory` (the caller removes it), under the same host and
        redirect rules as images, at most `max_video_bytes` within `video_timeout_s`."""
        target = self.resolve(url, task_id)
        directory.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(dir=directory, suffix=Path(target.target.split("?")[0]).suffix[:8],
                                             delete=False)
        try:
            with handle:
                self.stream(target, handle.write, self.limits.max_video_bytes, self.limits.video_timeout_s,
                            presigned=_is_cloud(url))
        except BaseException:
            Path(handle.name).unlink(missing_ok=True)
            raise
        return Path(handle.name)

    def stream(self, target: HttpUrl, write, max_bytes: int, timeout_s: float, presigned: bool = False) -> int:
        """Feed the body at `target` to `write(chunk)`, following at most `MAX_REDIRECTS` redirects, each target
        re-checked (a presign redirect from Label Studio may point at the storage provider, fetched without the
        token); at most `max_bytes`, all within `timeout_s`. Returns the bytes written."""
        deadline = time.monotonic() + timeout_s
        for _ in range(MAX_REDIRECTS + 1):
            if not (self.is_allowed(target) or presigned):
                raise TaskError(f"image host of {target.url!r} is neither Label Studio "
                                f"({self.connection.base_url or 'LABEL_STUDIO_URL not set'}) nor in ALLOWED_IMAGE_HOSTS")
            to_label_studio = self.connection.is_label_studio(target)
            headers = self.connection.auth_headers() if to_label_studio else {}
            response = self._get(target, headers, deadline, timeout_s)
            with response:
                if response.is_redirect:
                    presigned = presigned and to_label_studio
                    target = self._parse(urljoin(target.url, response.headers.get("Location", "")))
                    continue
                if response.status_code != 200:
                    reason = failure_reason(response) if to_label_studio and response.status_code in (401, 403) \
                        else f"HTTP {response.status_code}"
                    raise TaskError(f"image URL {target.url!r} returned {reason}")
                return self._read_capped(response, target, deadline, max_bytes, timeout_s, write)
        raise TaskError(f"image URL {target.url!r} redirected more than {MAX_REDIRECTS} times")

    def _get(self, target: HttpUrl, headers: dict, deadline: float, timeout_s: float) -> requests.Response:
        remaining = self._remaining(target, deadline, timeout_s)
        try:
            return self._session.get(target.url, headers=headers, stream=True, allow_redirects=False,
                                     timeout=(remaining, remaining))
        except requests.RequestException as exc:
            raise TaskError(f"could not download image {target.url!r}: {exc.__class__.__name__}") from None

    @staticmethod
    def _remaining(target: HttpUrl, deadline: float, timeout_s: float) -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TaskError(f"{target.url!r} did not download within its time limit ({timeout_s:g} s: "
                            "DOWNLOAD_TIMEOUT_S for images, VIDEO_DOWNLOAD_TIMEOUT_S for videos)")
        return remaining

    def _read_capped(self, response: requests.Response, target: HttpUrl, deadline: float, cap: int,
                     timeout_s: float, write) -> int:
        """Feed the body to `write`, at most `cap` bytes, before `deadline` (each socket read waits only for the
        time left); returns the bytes written."""
        declared = response.headers.get("Content-Length") or ""
        if re.fullmatch(r"[0-9]{1,30}", declared) and int(declared) > cap:
            raise TaskError(f"{target.url!r} is {int(declared)} bytes, over its size limit of {cap} bytes "
                            "(MAX_IMAGE_BYTES / MAX_VIDEO_BYTES)")
        sock = _socket_of(response)
        total = 0
        while True:
            remaining = self._remaining(target, deadline, timeout_s)
            if sock is not None:
                sock.settimeout(remaining)
            try:
                chunk = response.raw.read1(CHUNK_BYTES)
            except Exception as exc:  # socket timeouts and resets surface as several urllib3 / OS errors
                if deadline - time.monotonic() <= 0:
                    self._remaining(target, deadline, timeout_s)
                raise TaskError(f"could not download {target.url!r}: {exc.__class__.__name__}") from None
            if not chunk:
                return total
            total += len(chunk)
            if total > cap:
                raise TaskError(f"{target.url!r} is over its size limit of {cap} bytes (MAX_IMAGE_BYTES / "
                                "MAX_VIDEO_BYTES)")
            write(chunk)


def _is_cloud(url: str) -> bool:
    return isinstance(url, str) and "\\" not in url and urlsplit(url.strip()).scheme.lower() in CLOUD_SCHEMES


def _socket_of(response: requests.Response):
    """The socket under a streamed response (urllib3 2), to bound each read by the time left; None if hidden."""
    connection = getattr(response.raw, "_connection", None) or getattr(response.raw, "connection", None)
    return getattr(connection, "sock", None)


def build_image_fetcher(settings: Settings, connection: LabelStudioConnection,
                        cache_bytes: int | None = None) -> ImageFetcher:
    """The fetcher every process part uses, from the settings (cache size in bytes: `IMAGE_CACHE_MB` by default)."""
    limits = ImageLimits(settings.max_image_bytes, settings.max_image_pixels, settings.download_timeout_s,
                         settings.allowed_image_hosts, settings.working_image_side, settings.max_video_bytes,
                         settings.video_download_timeout_s)
    cache_bytes = settings.image_cache_mb * 1024 * 1024 if cache_bytes is None else cache_bytes
    cache = DiskCache(settings.layout.image_cache, cache_bytes)
    return ImageFetcher(connection, limits, cache, settings.download_workers)
