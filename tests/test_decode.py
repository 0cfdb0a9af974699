"""Decoding task images: bit depths scaled (never clipped to white or black), working size, EXIF sizes, the decode
budget, and the whole-download deadline."""

import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest
from PIL import Image

from backend.core.errors import TaskError
from backend.labelstudio.client import LabelStudioConnection
from backend.labelstudio.decode import DecodeBudget, decode_image
from backend.labelstudio.image_cache import DiskCache
from backend.labelstudio.images import ImageFetcher, ImageLimits
from tests.conftest import png_bytes

RAMP16 = (np.arange(64 * 16).reshape(16, 64) * 64).astype(np.uint16)  # 0 .. 65472


def _pil(array: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def _cv2_png(array: np.ndarray) -> bytes:
    return cv2.imencode(".png", array)[1].tobytes()


# (encoded image, expected grey level of every pixel as uint8 (h, w))
@pytest.mark.parametrize("data,expected", [
    (_pil(RAMP16, "PNG"), np.round(RAMP16 / 257.0)),  # 16-bit grey: not all white
    (_cv2_png(np.dstack([RAMP16] * 3)), RAMP16 >> 8),  # 48-bit RGB: the high byte
    (_pil(np.linspace(0, 1, 1024, dtype=np.float32).reshape(16, 64), "TIFF"),
     np.round(np.linspace(0, 1, 1024).reshape(16, 64) * 255)),  # float in [0, 1]: not all black
    (_pil(np.linspace(-5, 300, 1024, dtype=np.float32).reshape(16, 64), "TIFF"),
     np.round(np.linspace(0, 255, 1024).reshape(16, 64))),  # other float ranges: stretched
    (_pil((np.arange(1024).reshape(16, 64) * 1000).astype(np.int32), "TIFF"),
     np.round(np.arange(1024).reshape(16, 64) / 1023 * 255)),  # 32-bit integers: stretched
    (_pil(np.arange(1024).reshape(16, 64).astype(np.uint8), "PNG"), np.arange(1024).reshape(16, 64) % 256),
])
def test_bit_depths_are_scaled(data, expected):
    image = decode_image(data, 10_000_000)
    assert image.pixels.dtype == np.uint8 and image.pixels.shape == (16, 64, 3)
    assert np.abs(image.pixels[..., 0].astype(int) - expected.astype(int)).max() <= 1
    assert image.original_size == (64, 16)


@pytest.mark.parametrize("size,fmt,orientation,working,original", [
    ((8000, 6000), "PNG", None, (2048, 1536), (8000, 6000)),
    ((6000, 4000), "JPEG", None, (2048, 1365), (6000, 4000)),
    ((6000, 4000), "JPEG", 6, (1365, 2048), (4000, 6000)),  # EXIF turns it: sizes as the annotator sees them
    ((1200, 800), "PNG", None, (1200, 800), (1200, 800)),  # smaller than the working size: untouched
])
def test_large_images_are_decoded_to_the_working_size(size, fmt, orientation, working, original):
    w, h = size
    array = np.zeros((h, w, 3), np.uint8)
    array[: h // 2] = (200, 30, 30)  # top half red: orientation must survive the scaling
    if orientation:
        data = png_bytes(array, exif_orientation=orientation)
    else:
        data = _pil(array, fmt)
    image = decode_image(data, 80_000_000, 2048)
    assert image.working_size == working and image.original_size == original
    if orientation == 6:  # rotated 90 degrees clockwise for display: the red half is on the right
        assert image.pixels[:, -10:, 0].mean() > 150 and image.pixels[:, :10, 0].mean() < 50
    else:
        assert image.pixels[:10, :, 0].mean() > 150 and image.pixels[-10:, :, 0].mean() < 50


def test_decode_budget_bounds_pixels_in_flight():
    budget = DecodeBudget(100)
    active, peak, lock = [0], [0], threading.Lock()

    def work(pixels):
        with budget.reserve(pixels):
            with lock:
                active[0] += pixels
                peak[0] = max(peak[0], active[0])
            time.sleep(0.05)
            with lock:
                active[0] -= pixels

    threads = [threading.Thread(target=work, args=(p,)) for p in (60, 60, 30, 30, 500)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert peak[0] <= 100 + 400  # the 500-pixel image counts as the whole budget and decodes alone
    assert all(not t.is_alive() for t in threads)


class _Drip(BaseHTTPRequestHandler):
    """Sends a PNG header, then one byte every 0.3 s (never finishing in time)."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        try:
            for _ in range(200):
                self.wfile.write(b"\x89")
                self.wfile.flush()
                time.sleep(0.3)
        except OSError:
            pass


def test_a_dripping_download_stops_at_the_deadline(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Drip)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    fetcher = ImageFetcher(LabelStudioConnection(url, "k"), ImageLimits(10_000_000, 10_000_000, 2.0),
                           DiskCache(tmp_path, 0), 1)
    started = time.monotonic()
    with pytest.raises(TaskError, match=r"within its time limit \(2 s: DOWNLOAD_TIMEOUT_S"):
        fetcher.load("/data/upload/1/slow.png", 1)
    assert time.monotonic() - started < 10.0  # the drip alone would last 60 s
    server.shutdown()
