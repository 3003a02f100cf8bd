"""Atomic writes of files and whole folders: a kill at any instant leaves the old version or the new one.

* `atomic_write(path, data)`: write a temporary file in the same folder, fsync it, rename it over `path`,
  fsync the folder (so the rename itself survives a power loss).
* `build_folder(target)`: a context manager that yields a fresh hidden folder next to `target`; on a clean
  exit `publish_folder` makes it `target`: every file in it is fsynced, the folder renamed into place and
  the parent folder fsynced. An exception (or a kill) leaves no half-written `target`.

Temporary names start with `.<name>.tmp-` (folders replaced on the way out: `.<name>.old-`), so a reader
that lists a folder can tell them apart from finished ones. Files and folders get the mode a plain
open() / mkdir() would give (the umask applies), not the private mode of mkstemp / mkdtemp: run folders,
caches and checkpoints are read by collaborators on shared machines.

The runner's persistent writes (`runner.fsio`) go through `atomic_write` too.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def atomic_write(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Replace `path` by `data` (text is UTF-8) atomically and durably; see the module docstring."""
    path = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with naming_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with naming_errors(path), os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o666 & ~umask())
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


@contextmanager
def naming_errors(path: Path) -> Iterator[None]:
    """Re-raise an OSError without a file name (a failed write() has none) as one naming `path`."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None and exc.errno is not None:
            raise OSError(exc.errno, os.strerror(exc.errno), str(path)) from None
        raise


@contextmanager
def build_folder(target: str | os.PathLike[str], *, replace: bool = True) -> Iterator[Path]:
    """Yield a fresh temporary folder next to `target` to fill; on a clean exit `publish_folder` makes it
    `target`. On an exception nothing is published; the temporary folder is removed either way."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        tmp.chmod(0o777 & ~umask())
        yield tmp
        publish_folder(tmp, target, replace=replace)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish_folder(folder: str | os.PathLike[str], target: str | os.PathLike[str], *, replace: bool = True) -> None:
    """Rename a finished `folder` to `target` durably: fsync everything in it, rename, fsync the parent.

    replace True: an existing `target` is replaced (renamed aside, the new one renamed in, the old one
    deleted). replace False, for caches whose content is fixed by their name: when `target` exists (a
    concurrent build won the rename) it is kept and `folder` left for the caller to remove.
    """
    folder, target = Path(folder), Path(target)
    _fsync_tree(folder)
    if replace and target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.rename(target, old)
        os.rename(folder, target)
        fsync_dir(target.parent)
        shutil.rmtree(old, ignore_errors=True)
        return
    try:
        os.rename(folder, target)
    except OSError:
        if replace or not target.is_dir():
            raise
    fsync_dir(target.parent)


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """fsync a folder, so that the names created or renamed in it are on disk."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """fsync every file and folder under `root` (itself included), deepest first."""
    for folder, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(folder)


def umask() -> int:
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
