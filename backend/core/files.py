"""Atomic file writes: readers (other threads, other worker processes) never see a partial file."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """A temporary path in `target`'s directory to write to; renamed onto `target` in one step when the block
    succeeds, removed when it raises."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(target: Path, data: bytes | str) -> Path:
    """Write `data` (text is UTF-8) to `target` atomically; returns `target`."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    return Path(target)


def check_writable_dir(path: Path, name: str) -> None:
    """Make sure `path` is a directory this process can write (creating it when missing); `RuntimeError` naming the
    setting `name` (e.g. "MODEL_DIR") and the path otherwise."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise RuntimeError(f"{name}={path} is not a writable directory ({exc.strerror or exc}): the service keeps its "
                           f"state, image cache and trained models there; point {name} at a writable directory") \
            from None
