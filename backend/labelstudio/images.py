"""Task image URL → RGB uint8 array (H, W, 3), as the annotator sees it (EXIF orientation applied).

URL forms: `/data/upload/...` and `/data/local-files/?d=...` (relative to Label Studio),
absolute http(s) URLs, and cloud URIs (s3://, gs://, azure-blob://) through Label Studio's
task presign endpoint. Only Label Studio's own host and `ALLOWED_IMAGE_HOSTS` are fetched
(no SSRF); bytes and pixels are capped (no decompression bombs).
"""

from __future__ import annotations

import base64
import io
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit

import numpy as np
import requests
from PIL import Image, ImageOps, UnidentifiedImageError

from backend.core.errors import TaskError
from backend.labelstudio.client import LabelStudioConnection, _netloc
from backend.labelstudio.image_cache import DiskCache

CLOUD_SCHEMES = ("s3", "gs", "azure-blob", "azure-spi")
MAX_REDIRECTS = 3


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int
    max_pixels: int
    timeout_s: float
    allowed_hosts: tuple[str, ...] = ()


class ImageFetcher:
    """Downloads, caches and decodes task images; one instance per worker process."""

    def __init__(self, connection: LabelStudioConnection, limits: ImageLimits, cache: DiskCache,
                 download_workers: int = 8, session: requests.Session | None = None):
        self.connection = connection
        self.limits = limits
        self.cache = cache
        self._session = session or requests.Session()
        self._pool = ThreadPoolExecutor(max_workers=download_workers, thread_name_prefix="image-download")

    def submit(self, url: str, task_id: int | None = None) -> "Future[np.ndarray]":
        """Start loading one image in the download pool; the future raises `TaskError` on failure."""
        return self._pool.submit(self.load, url, task_id)

    def load(self, url: str, task_id: int | None = None) -> np.ndarray:
        """RGB uint8 (H, W, 3) array of the image at `url`; raises `TaskError` with the reason."""
        if not isinstance(url, str) or not url.strip():
            raise TaskError("task has no image URL")
        data = self.cache.get(url)
        if data is None:
            data = self._download(url, task_id)
            array = decode_image(data, self.limits.max_pixels, url)
            self.cache.put(url, data)
            return array
        return decode_image(data, self.limits.max_pixels, url)

    # -- URL handling ---------------------------------------------------------------------------

    def resolve(self, url: str, task_id: int | None) -> str:
        """Absolute URL to fetch; cloud URIs become the task's presign endpoint on Label Studio."""
        url = url.strip()
        scheme = urlsplit(url).scheme.lower()
        base = self.connection.base_url
        if scheme in CLOUD_SCHEMES:
            if not base or task_id is None:
                raise TaskError(f"cannot fetch {url}: cloud storage URLs need LABEL_STUDIO_URL and a task id")
            fileuri = base64.urlsafe_b64encode(url.encode()).decode()
            return f"{base}/tasks/{task_id}/presign/?fileuri={quote(fileuri)}"
        if scheme in ("http", "https"):
            return url
        if scheme:
            raise TaskError(f"unsupported image URL scheme {scheme!r} in {url!r}")
        if not base:
            raise TaskError(f"image URL {url!r} is relative; set LABEL_STUDIO_URL so it can be fetched")
        return urljoin(base + "/", url.lstrip("/"))

    def _is_label_studio(self, url: str) -> bool:
        netloc = self.connection.netloc
        return bool(netloc) and _netloc(url) == netloc

    def _is_allowed(self, url: str) -> bool:
        host = (urlsplit(url).hostname or "").lower()
        return self._is_label_studio(url) or host in self.limits.allowed_hosts or _netloc(url) in self.limits.allowed_hosts

    def _download(self, url: str, task_id: int | None) -> bytes:
        target = self.resolve(url, task_id)
        presigned = urlsplit(url).scheme.lower() in CLOUD_SCHEMES
        for _ in range(MAX_REDIRECTS + 1):
            if not (self._is_allowed(target) or presigned):
                raise TaskError(f"image host of {target!r} is neither Label Studio "
                                f"({self.connection.base_url or 'LABEL_STUDIO_URL not set'}) nor in ALLOWED_IMAGE_HOSTS")
            headers = self.connection.auth_headers() if self._is_label_studio(target) else {}
            try:
                response = self._session.get(target, headers=headers, stream=True, allow_redirects=False,
                                             timeout=self.limits.timeout_s)
            except requests.RequestException as exc:
                raise TaskError(f"could not download image {target!r}: {exc.__class__.__name__}") from None
            with response:
                if response.is_redirect:
                    # Presign redirects come from Label Studio itself and point at the storage provider.
                    presigned = presigned and self._is_label_studio(target)
                    target = urljoin(target, response.headers["Location"])
                    continue
                if response.status_code != 200:
                    hint = " (check LABEL_STUDIO_API_KEY)" if response.status_code in (401, 403) else ""
                    raise TaskError(f"image URL {target!r} returned HTTP {response.status_code}{hint}")
                return self._read_capped(response, target)
        raise TaskError(f"image URL {url!r} redirected more than {MAX_REDIRECTS} times")

    def _read_capped(self, response: requests.Response, target: str) -> bytes:
        cap = self.limits.max_bytes
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > cap:
            raise TaskError(f"image {target!r} is {int(declared)} bytes, over MAX_IMAGE_BYTES={cap}")
        chunks, total = [], 0
        for chunk in response.iter_content(64 * 1024):
            total += len(chunk)
            if total > cap:
                raise TaskError(f"image {target!r} is over MAX_IMAGE_BYTES={cap}")
            chunks.append(chunk)
        return b"".join(chunks)


def decode_image(data: bytes, max_pixels: int, name: str = "image") -> np.ndarray:
    """Bytes → RGB uint8 (H, W, 3), EXIF-transposed; the pixel cap is checked before decoding."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            if w * h > max_pixels:
                raise TaskError(f"image {name!r} is {w}x{h} = {w * h} pixels, over MAX_IMAGE_PIXELS={max_pixels}")
            img = ImageOps.exif_transpose(img)
            return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except TaskError:
        raise
    except Image.DecompressionBombError as exc:
        raise TaskError(f"image {name!r} is over MAX_IMAGE_PIXELS={max_pixels} or PIL's bomb guard: {exc}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise TaskError(f"{name!r} is not a readable image: {exc}") from None
