"""Load a transformers model or processor from a local directory, the Hugging Face cache, or the hub.

The hub is asked only after a quick reachability probe, so an offline machine fails in seconds with a
clear reason instead of retrying for minutes.
"""

from __future__ import annotations

import socket
import time
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit


def hub_reachable(timeout_s: float = 3.0) -> bool:
    from huggingface_hub import constants

    parts = urlsplit(constants.ENDPOINT)
    try:
        with socket.create_connection((parts.hostname, parts.port or 443), timeout=timeout_s):
            return True
    except OSError:
        return False


@lru_cache(maxsize=4)
def _reachable_at(_minute: int) -> bool:
    return hub_reachable()


def source_available(source: str) -> bool:
    """Cheap check (no weights loaded) that `source` can be loaded: a local directory, a cached hub
    snapshot, or a reachable hub (probe result kept for ten minutes, so requests rarely wait on it)."""
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
    return _reachable_at(int(time.time() // 600))


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
