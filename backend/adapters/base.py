"""The adapter protocol and `LazyModel`, which builds an adapter once per process, thread-safely.

Weights never load at import time and never per request: the first `get()` (or the start-up
warm-up) builds the adapter; later calls reuse it. A failed build is remembered with its
reason so `/health` can say which model is missing and why.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import Callable, Generic, Iterator, Protocol, TypeVar

from backend.core.errors import ModelUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T", bound="ModelAdapter")
_no_loading = threading.local()


@contextmanager
def without_loading() -> Iterator[None]:
    """Within this block (in this thread), `LazyModel.get()` of a model not loaded yet raises `ModelUnavailable`
    instead of loading it: for work that is only worth doing with models already in memory."""
    before = getattr(_no_loading, "on", False)
    _no_loading.on = True
    try:
        yield
    finally:
        _no_loading.on = before


class ModelAdapter(Protocol):
    """What every adapter exposes: a stable name (used in `model_version`) and its device."""

    name: str
    device: str


class LazyModel(Generic[T]):
    """Builds `builder()` on first use; later calls return the same object."""

    def __init__(self, role: str, source: str, builder: Callable[[], T], probe: Callable[[], bool] | None = None):
        self.role = role
        self.source = source
        self._builder = builder
        self._probe = probe
        self._lock = threading.Lock()
        self._model: T | None = None
        self._error: str | None = None
        self._load_s: float | None = None

    @classmethod
    def loaded(cls, role: str, source: str, model: T) -> "LazyModel[T]":
        """A `LazyModel` around a model that is already built."""
        lazy = cls(role, source, lambda: model)
        lazy._model = model
        return lazy

    def get(self) -> T:
        if self._model is not None:
            return self._model
        if getattr(_no_loading, "on", False):
            raise ModelUnavailable(f"{self.role} model {self.source!r} is not loaded yet")
        with self._lock:
            if self._model is None and self._error is None:
                started = time.perf_counter()
                log.info("loading %s model from %s", self.role, self.source)
                try:
                    self._model = self._builder()
                except Exception as exc:  # any loading failure makes the model unavailable, not the service
                    self._error = f"{exc.__class__.__name__}: {exc}"
                    log.warning("%s model %s could not be loaded: %s", self.role, self.source, self._error)
                else:
                    self._load_s = time.perf_counter() - started
                    log.info("%s model ready in %.1f s", self.role, self._load_s)
        if self._model is None:
            raise ModelUnavailable(f"{self.role} model {self.source!r} is not available: {self._error}")
        return self._model

    def try_get(self) -> T | None:
        try:
            return self.get()
        except ModelUnavailable:
            return None

    def available(self) -> bool:
        """Whether the model is loaded or looks loadable (cheap `probe`, no weights read)."""
        if self._model is not None:
            return True
        if self._error is not None:
            return False
        return self._probe() if self._probe else True

    @property
    def ready(self) -> bool:
        return self._model is not None

    @property
    def failed(self) -> bool:
        return self._error is not None

    def status(self) -> dict:
        state = "ready" if self.ready else ("failed" if self.failed else "not loaded")
        out = {"source": self.source, "state": state}
        if self._error:
            out["error"] = self._error
        if self._load_s is not None:
            out["load_s"] = round(self._load_s, 2)
        return out
