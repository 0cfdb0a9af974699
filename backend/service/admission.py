"""Admission control for `/predict`: accept only work that can finish inside Label Studio's 100 s timeout.

At most `PREDICT_CONCURRENCY` prediction requests run per worker process, and smart-tool (interactive) requests
have slots of their own (`interactive_slots`: the threads left after those and one for `/health` and webhooks), so a
thread is always free for `/health`, webhooks and the refusals. A request is also refused while the work already
admitted, plus its own, is estimated to take longer than `PREDICT_DEADLINE_S` — a request alone too, when its own
estimate is over the deadline (Label Studio would give up on it while the worker kept computing): seconds per
image are measured (an exponential moving average per pipeline) as requests finish. Refused requests get 503 with
`Retry-After` and the estimate.
"""

from __future__ import annotations

import math
import threading
import time
from contextlib import contextmanager

from backend.core.errors import Overloaded

EMA_WEIGHT = 0.3  # weight of the newest measurement of seconds per image


def interactive_slots(threads: int, predict_concurrency: int) -> int:
    """Smart-tool requests admitted at once: the threads left after `/predict`'s and one kept for `/health` and
    webhooks (at least 1)."""
    return max(1, threads - predict_concurrency - 1)


class Admission:
    """`what` names the requests in refusals; `advice` says what to do instead."""

    def __init__(self, max_requests: int, deadline_s: float, what: str = "prediction requests",
                 advice: str = "retry later or use a background predict job"):
        self.max_requests = max_requests
        self.deadline_s = deadline_s
        self.what = what
        self.advice = advice
        self._lock = threading.Lock()
        self._in_flight: dict[int, float] = {}  # request ticket → its estimated seconds of work
        self._seconds_per_image: dict[str, float] = {}
        self._next = 0
        self.refused = 0

    def estimate(self, pipeline: str, images: int) -> float:
        """Estimated seconds for `images` images of `pipeline` (0 until a first request was measured)."""
        return self._seconds_per_image.get(pipeline, 0.0) * images

    @contextmanager
    def admit(self, pipeline: str, images: int, cap_s: float | None = None):
        """Hold a slot for one request of `images` images; raises `Overloaded` when there is none. `cap_s`: the work
        stops by itself after this many seconds (its estimate is at most that)."""
        own = self.estimate(pipeline, images)
        if cap_s is not None:
            own = min(own, cap_s)
        if own > self.deadline_s:
            with self._lock:
                self.refused += 1
            raise Overloaded(f"too much for one request: {images} images estimated at {own:.0f} s ({own / images:.2f} "
                             f"s each, measured), over PREDICT_DEADLINE_S={self.deadline_s:g} s (Label Studio gives up "
                             "at 100 s); select fewer tasks, or pre-label them with a background predict job "
                             "(they run with no time limit)", retry_after_s=max(1, round(own)))
        with self._lock:
            queued = sum(self._in_flight.values())
            if len(self._in_flight) >= self.max_requests or (self._in_flight and queued + own > self.deadline_s):
                self.refused += 1
                wait = max(1, math.ceil(queued / max(len(self._in_flight), 1)))
                raise Overloaded(f"busy: {len(self._in_flight)} {self.what} in flight (about {queued:.0f} s of work); "
                                 f"{self.advice}", retry_after_s=wait)
            ticket = self._next
            self._next += 1
            self._in_flight[ticket] = own
        started = time.perf_counter()
        try:
            yield
        finally:
            with self._lock:
                del self._in_flight[ticket]
        if images:
            self.record(pipeline, images, time.perf_counter() - started)

    def record(self, pipeline: str, images: int, seconds: float) -> None:
        per_image = seconds / images
        with self._lock:
            old = self._seconds_per_image.get(pipeline)
            self._seconds_per_image[pipeline] = per_image if old is None else \
                (1 - EMA_WEIGHT) * old + EMA_WEIGHT * per_image

    def status(self) -> dict:
        with self._lock:
            return {"in_flight": len(self._in_flight), "max": self.max_requests, "refused": self.refused,
                    "seconds_per_image": {k: round(v, 3) for k, v in self._seconds_per_image.items()}}
