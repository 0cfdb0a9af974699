"""Load a transformers model or processor from a local directory, the Hugging Face cache, or the hub.

The hub is asked only after a quick reachability probe, so an offline machine fails in seconds with a
clear reason instead of retrying for minutes.
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

PROBE_TTL_S = 600  # a reachability result is trusted this long
_probe = {"reachable": None, "checked_at": 0.0, "refreshing": False}
_probe_lock = threading.Lock()
_caller = threading.local()


def hub_reachable(timeout_s: float = 3.0) -> bool:
    from huggingface_hub import constants

    parts = urlsplit(constants.ENDPOINT)
    try:
        with socket.create_connection((parts.hostname, parts.port or 443), timeout=timeout_s):
            return True
    except OSError:
        return False


@contextmanager
def hub_probe_nonblocking():
    """Inside this block `source_available` never waits for the network: it answers from the last probe (False
    before the first one) and refreshes a stale result in the background. For `/health`."""
    _caller.nonblocking = True
    try:
        yield
    finally:
        _caller.nonblocking = False


def _refresh_probe() -> bool:
    reachable = hub_reachable()
    with _probe_lock:
        _probe.update(reachable=reachable, checked_at=time.monotonic(), refreshing=False)
    return reachable


def _hub_reachable_cached() -> bool:
    """The hub probe's result, at most `PROBE_TTL_S` old; only the very first blocking call waits for it."""
    with _probe_lock:
        known = _probe["reachable"]
        if known is not None and time.monotonic() - _probe["checked_at"] < PROBE_TTL_S:
            return known
        if known is not None or getattr(_caller, "nonblocking", False):
            if not _probe["refreshing"]:
                _probe["refreshing"] = True
                threading.Thread(target=_refresh_probe, name="hub-probe", daemon=True).start()
            return bool(known)
    return _refresh_probe()


def source_available(source: str) -> bool:
    """Cheap check (no weights loaded) that `source` can be loaded: a local directory, a cached hub
    snapshot, or a reachable hub (probe result kept for ten minutes and refreshed in the background)."""
    if Path(source).is_dir():
        return True
    if Path(source).is_absolute() or source.startswith("."):
        return False
    try:
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(source, "config.json"), str):
            return True
    except Exception:  # malformed repo ids and the like: not loadable from the cache
        return False
    return _hub_reachable_cached()


def load_pretrained(cls, source: str, **kwargs):
    """`cls.from_pretrained(source)` for a local directory, else from the HF cache, else from the hub."""
    if Path(source).is_dir():
        return cls.from_pretrained(source, **kwargs)
    try:
        return cls.from_pretrained(source, local_files_only=True, **kwargs)
    except OSError:
        pass
    if not hub_reachable():
        raise OSError(f"{source!r} is not a local directory, not in the Hugging Face cache, and the hub is "
                      "unreachable; download it once (save_pretrained) into MODEL_DIR and point the setting there")
    return cls.from_pretrained(source, **kwargs)


def short_name(source: str) -> str:
    """The last part of a hub id or directory ("IDEA-Research/grounding-dino-tiny" → "grounding-dino-tiny")."""
    return source.rstrip("/").rsplit("/", 1)[-1]
