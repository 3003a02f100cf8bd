"""The one door for persistent writes: atomic replace and inter-process locks.

Progress, registry, results and golden files must survive a kill at any instant (a reader sees the old
file or the new one, never half of one) and concurrent writers (16 merges at once lose nothing).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock


def atomic_write(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Write to a temp file in the same folder, fsync it, rename over `path`, fsync the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


@contextmanager
def locked(path: str | os.PathLike[str], timeout_s: float = 120.0) -> Iterator[None]:
    """Hold `<path>.lock` (an flock, released by the OS if the holder dies)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock", timeout=timeout_s):
        yield


def append_line_fsync(path: str | os.PathLike[str], lines: list[str]) -> None:
    """Append whole lines and fsync: a resume point that survives SIGKILL (a torn last line is dropped on read)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("".join(line.rstrip("\n") + "\n" for line in lines))
        handle.flush()
        os.fsync(handle.fileno())
