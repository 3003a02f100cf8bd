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
    """Write to a temp file in the same folder, fsync it, rename over `path`, fsync the folder. The file gets
    the mode a plain open() would give (0666 less the umask), not mkstemp's private 0600: run folders and
    golden files are read by collaborators on shared clusters."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o666 & ~_umask())
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


def _umask() -> int:
    """The process umask, read without setting it (os.umask is the only API and briefly changes it for every
    thread); the set-and-restore pair only where /proc does not say."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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
