"""The run registry, runs/registry.json: run key → status, shared by every process that runs manifests.

Statuses: running (pid, host, process start time, heartbeat) · complete · failed · invalid (with a reason).
Every update is a read-modify-write under `fsio.locked` with an atomic replace, so 16 concurrent writers lose
nothing and a reader never sees half a file. A run becomes "running" only through `claim`, one locked
compare-and-set: of N copies of one manifest started at once exactly one owns the run, the others get
`AlreadyRunning` and write nothing. An owner is live when its pid still exists on this host with the same
start time (a reused pid is not the owner) or, seen from another host, when its heartbeat is recent. A complete entry is never downgraded by a run (the old scripts' "skip
overwrote complete" bug, docs/golden.md §3, failure mode 6); only `invalidate` (a human decision with a reason)
moves it, and a re-run then starts from scratch.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner import fsio

STATUSES = ("running", "complete", "failed", "invalid")
HEARTBEAT_S = 30.0  # how often a running process refreshes its entry
STALE_HEARTBEAT_S = 600.0  # a running entry whose heartbeat is older than this is treated as dead


class RegistryError(ValueError):
    """The registry file is unreadable, or an update is not allowed (names the file and the key)."""


class AlreadyRunning(RegistryError):
    """`claim` lost: another live process owns the run (`.entry` is its registry row)."""

    def __init__(self, entry: Entry) -> None:
        self.entry = entry
        since = entry.raw.get("started") or entry.heartbeat or "?"
        super().__init__(f"already running (pid {entry.pid} on {entry.host}, since {since})")


def process_start(pid: int) -> int | None:
    """The start time of process `pid` in clock ticks since boot (/proc/PID/stat field 22), None when it is
    gone or /proc is absent: with the pid it identifies one process even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def owner_fields(pid: int | None = None) -> dict[str, Any]:
    """pid, host and process start time of the owner of a running entry (this process by default)."""
    pid = os.getpid() if pid is None else pid
    return {"pid": pid, "host": socket.gethostname(), "pid_start": process_start(pid)}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Entry:
    """One registry row (see the module docstring); `raw` keeps unknown keys so nothing is dropped."""

    key: str
    status: str
    run_dir: str | None
    manifest: str | None
    pid: int | None
    host: str | None
    heartbeat: str | None
    reason: str | None
    updated: str | None
    raw: dict[str, Any]

    @classmethod
    def from_json(cls, key: str, raw: dict[str, Any]) -> Entry:
        return cls(
            key=key,
            status=raw.get("status", ""),
            run_dir=raw.get("run_dir"),
            manifest=raw.get("manifest"),
            pid=raw.get("pid"),
            host=raw.get("host"),
            heartbeat=raw.get("heartbeat"),
            reason=raw.get("reason"),
            updated=raw.get("updated"),
            raw=dict(raw),
        )

    def is_live(self) -> bool:
        """True when another process owns this running entry: on this host its pid exists with the recorded
        start time (entries without one: and a recent heartbeat); on another host its heartbeat is recent."""
        if self.status != "running" or self.pid is None:
            return False
        if self.host != socket.gethostname():
            return _age_s(self.heartbeat) < STALE_HEARTBEAT_S
        if self.pid == os.getpid():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        started = self.raw.get("pid_start")
        if started is not None:
            return process_start(self.pid) == started
        return _age_s(self.heartbeat) < STALE_HEARTBEAT_S


def _age_s(iso: str | None) -> float:
    if not iso:
        return float("inf")
    try:
        return time.time() - datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return float("inf")


class Registry:
    """runs/registry.json under `runs_dir` (created on the first write)."""

    def __init__(self, runs_dir: str | os.PathLike[str]) -> None:
        self.path = Path(runs_dir) / "registry.json"

    # ---- reading ----
    def read(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise RegistryError(f"{self.path}:{exc.lineno}: registry is not valid JSON: {exc.msg}") from None
        if not isinstance(data, dict):
            raise RegistryError(f"{self.path}:1: registry must be a JSON object of run_key -> entry")
        return data

    def get(self, key: str) -> Entry | None:
        raw = self.read().get(key)
        return Entry.from_json(key, raw) if raw is not None else None

    def entries(self) -> list[Entry]:
        return [Entry.from_json(key, raw) for key, raw in sorted(self.read().items())]

    def latest_complete(self, manifest_name: str) -> Entry | None:
        """The most recently updated complete entry whose manifest name is `manifest_name`."""
        matches = [e for e in self.entries() if e.status == "complete" and e.manifest == manifest_name]
        return max(matches, key=lambda e: e.updated or "", default=None)

    # ---- writing ----
    def set_status(
        self,
        key: str,
        status: str,
        *,
        run_dir: str | None = None,
        manifest: str | None = None,
        reason: str | None = None,
        **extra: Any,
    ) -> Entry:
        """Set `key`'s status and return the entry as stored.

        A complete entry stays complete when a run reports running/failed for it (the returned entry then
        says "complete", so the caller can tell); use `invalidate` to take a complete run back.
        """
        if status not in STATUSES:
            raise RegistryError(f"{self.path}: {key}: unknown status {status!r} (allowed: {', '.join(STATUSES)})")
        with fsio.locked(self.path):
            data = self.read()
            old = data.get(key, {})
            if old.get("status") == "complete" and status in ("running", "failed"):
                return Entry.from_json(key, old)
            if status != "running" and Entry.from_json(key, old).is_live():
                return Entry.from_json(key, old)  # another live process owns the run: its outcome decides
            entry = dict(old)
            stamp = now_iso()
            entry.update(status=status, updated=stamp, reason=reason)
            if run_dir is not None:
                entry["run_dir"] = run_dir
            if manifest is not None:
                entry["manifest"] = manifest
            if status == "running":
                entry.update(owner_fields(extra.get("pid")), heartbeat=stamp, started=stamp)
            entry.update(extra)
            data[key] = entry
            fsio.atomic_write_json(self.path, data, in_place_if_full=True)
            return Entry.from_json(key, entry)

    def claim(self, key: str, *, run_dir: str, manifest: str) -> Entry | None:
        """Make this process the owner of `key` (status running) in one locked compare-and-set, and return the
        entry as it was before (None: there was none). A complete entry is left alone and returned (the
        caller skips); a live owner raises AlreadyRunning and nothing is written."""
        with fsio.locked(self.path):
            data = self.read()
            old = data.get(key)
            before = Entry.from_json(key, old) if old is not None else None
            if before is not None and before.status == "complete":
                return before
            if before is not None and before.is_live():
                raise AlreadyRunning(before)
            stamp = now_iso()
            entry = dict(old or {})
            entry.update(status="running", run_dir=run_dir, manifest=manifest, reason=None, updated=stamp)
            entry.update(owner_fields(), heartbeat=stamp, started=stamp)
            data[key] = entry
            fsio.atomic_write_json(self.path, data, in_place_if_full=True)
            return before

    def heartbeat(self, key: str) -> None:
        """Refresh a running entry's heartbeat (no-op for any other status)."""
        self._update_running(key, heartbeat=now_iso())

    def heartbeat_every(self, key: str, seconds: float = HEARTBEAT_S) -> Callable[[], None]:
        """A callable for a run's inner loop that refreshes the heartbeat at most every `seconds` (each refresh
        takes the registry lock and rewrites the file: per batch or per step would be too often)."""
        last = [time.monotonic()]

        def beat() -> None:
            if time.monotonic() - last[0] > seconds:
                self.heartbeat(key)
                last[0] = time.monotonic()

        return beat

    def release(self, key: str, reason: str) -> None:
        """A running entry whose process is stopping (preempted): drop pid/heartbeat so that a requeued job,
        on this host or another, resumes at once instead of waiting for the heartbeat to go stale."""
        self._update_running(key, pid=None, heartbeat=None, reason=reason, updated=now_iso())

    def _update_running(self, key: str, **fields: Any) -> None:
        """Set `fields` on a running entry, under the lock; any other status (or no entry) is left alone."""
        with fsio.locked(self.path):
            data = self.read()
            entry = data.get(key)
            if entry is None or entry.get("status") != "running":
                return
            entry.update(fields)
            fsio.atomic_write_json(self.path, data, in_place_if_full=True)

    def invalidate(self, key: str, why: str) -> Entry:
        """Mark `key` invalid with a reason; the next run of its manifest starts from scratch."""
        if not why.strip():
            raise RegistryError(f"{self.path}: {key}: invalidate needs a reason (--why)")
        with fsio.locked(self.path):
            data = self.read()
            if key not in data:
                known = ", ".join(k[:12] for k in sorted(data)) or "none"
                raise RegistryError(f"{self.path}: unknown run key {key!r} (known: {known})")
            data[key].update(status="invalid", reason=why, updated=now_iso())
            fsio.atomic_write_json(self.path, data, in_place_if_full=True)
            return Entry.from_json(key, data[key])

    def resolve_key(self, prefix: str) -> str:
        """A full run key from a unique prefix (users copy the first 10 characters from run tags)."""
        keys = [k for k in self.read() if k.startswith(prefix)]
        if len(keys) != 1:
            what = "no" if not keys else "more than one"
            raise RegistryError(f"{self.path}: {what} run key starts with {prefix!r}")
        return keys[0]
