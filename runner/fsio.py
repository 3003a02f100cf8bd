"""The one door for persistent writes: atomic replace and inter-process locks.

`atomic_write` is qc2c's (`qc2c.atomic`: temp file, fsync, rename, fsync the folder); this module adds JSON,
full-disk handling, appends and locks.

Progress, registry, results and golden files must survive a kill at any instant (a reader sees the old
file or the new one, never half of one) and concurrent writers (16 merges at once lose nothing).
A write that fails raises OSError naming the file it was writing, and a full disk is told apart
(`disk_full`, `no_space_line`) so a run can fail with one line naming the path and the free space.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock

from qc2c.atomic import atomic_write
from qc2c.atomic import naming_errors as _naming

__all__ = ["atomic_write", "atomic_write_json", "append_line_fsync", "disk_full", "locked", "no_space_line"]


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, in_place_if_full: bool = False) -> None:
    """`atomic_write` of indented JSON. `in_place_if_full`, for the small bookkeeping files (registry,
    status.json) whose failure state must still be written on a full disk: when the atomic write finds no
    space, the file is overwritten in place if the new text fits in the blocks it already holds."""
    text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    try:
        atomic_write(path, text)
    except OSError as exc:
        if not (in_place_if_full and disk_full(exc) and _overwrite_in_place(Path(path), text.encode("utf-8"))):
            raise


def _overwrite_in_place(path: Path, raw: bytes) -> bool:
    """Rewrite `path` without allocating (True when done): only when `raw` fits in its allocated blocks."""
    try:
        if len(raw) > path.stat().st_blocks * 512:
            return False
        with open(path, "r+b") as handle:
            handle.write(raw)
            handle.truncate()
            handle.flush()
            os.fsync(handle.fileno())
    except OSError:
        return False
    return True


def disk_full(exc: BaseException) -> bool:
    """True for "no space left on device" and "disk quota exceeded"."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def no_space_line(exc: OSError, fallback: str | os.PathLike[str]) -> str:
    """One line naming the file that could not be written and the free space where it lives."""
    path = Path(exc.filename) if exc.filename else Path(fallback)
    probe = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
    try:
        free = f"{shutil.disk_usage(probe).free / 1e6:.1f} MB free"
    except OSError:
        free = "free space unknown"
    return f"{path}: {os.strerror(exc.errno or errno.ENOSPC).lower()} ({free} on {probe}); free space, then run again"


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
    with _naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write("".join(line.rstrip("\n") + "\n" for line in lines))
            handle.flush()
            os.fsync(handle.fileno())
