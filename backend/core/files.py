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


def check_writable_dir(path: Path, name: str, probe_bytes: int = 0) -> None:
    """Make sure `path` is a directory this process can write `probe_bytes` into (creating it when missing; the
    probe file is fsynced and removed); `RuntimeError` naming the setting `name` (e.g. "MODEL_DIR"), the path and
    the cause otherwise."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-check-")
        try:
            if probe_bytes:
                os.write(fd, b"\0" * probe_bytes)
                os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise RuntimeError(f"{name}={path} cannot be written ({exc.strerror or exc}): the service keeps its state, "
                           f"image cache and trained models there; free disk space or point {name} at a writable "
                           "directory") from None
