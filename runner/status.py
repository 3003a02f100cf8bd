"""status.json of a run folder: a small, atomically rewritten snapshot for humans and `remote status`.

{"state": "running|complete|failed|preempted", "run_key", "pid", "host", "updated": iso,
 "datasets": {name: {"n_done", "n_total", "n_errors"}}, "eta_s": float|null, "exit_code": int|null}
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner import fsio
from runner.provenance import redact
from runner.registry import now_iso

STATES = ("running", "complete", "failed", "preempted")


@dataclass
class StatusFile:
    """Tracks per-dataset counts and the ETA; `write()` replaces run_dir/status.json atomically."""

    run_dir: Path
    run_key: str
    state: str = "running"
    datasets: dict[str, dict[str, int]] = field(default_factory=dict)
    exit_code: int | None = None
    reason: str | None = None
    _t0: float = field(default_factory=time.monotonic)
    _n_scored_here: int = 0

    @property
    def path(self) -> Path:
        return self.run_dir / "status.json"

    def set_dataset(self, name: str, *, n_done: int, n_total: int, n_errors: int) -> None:
        self.datasets[name] = {"n_done": n_done, "n_total": n_total, "n_errors": n_errors}

    def scored(self, name: str, n: int, n_errors: int) -> None:
        """Count `n` samples just scored by this process (the ETA uses this process's rate only)."""
        entry = self.datasets[name]
        entry["n_done"] += n
        entry["n_errors"] += n_errors
        self._n_scored_here += n

    def eta_s(self) -> float | None:
        remaining = sum(d["n_total"] - d["n_done"] for d in self.datasets.values())
        if remaining <= 0:
            return 0.0
        if self._n_scored_here == 0:
            return None
        return remaining * (time.monotonic() - self._t0) / self._n_scored_here

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "run_key": self.run_key,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "updated": now_iso(),
            "datasets": self.datasets,
            "eta_s": self.eta_s(),
            "exit_code": self.exit_code,
            "reason": self.reason,
        }

    def write(self, state: str | None = None, *, exit_code: int | None = None, reason: str | None = None) -> None:
        if state is not None:
            if state not in STATES:
                raise ValueError(f"unknown run state {state!r} (allowed: {', '.join(STATES)})")
            self.state = state
        if exit_code is not None:
            self.exit_code = exit_code
        if reason is not None:
            self.reason = reason
        fsio.atomic_write_json(self.path, redact(self.to_json()), in_place_if_full=True)
