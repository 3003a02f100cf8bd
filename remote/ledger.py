"""Local ledger `runs/remote_jobs.json`: what was launched where, so status/logs/pull/merge find it again.

Atomic and locked through runner.fsio (a crash mid-write leaves the old ledger; two launches at once lose
nothing). It holds names, ids and paths only — never environment values.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from runner.fsio import atomic_write_json, locked

DEFAULT_LEDGER = Path("runs/remote_jobs.json")


@dataclass
class LedgerEntry:
    name: str  # job name = tmux session / Slurm job name
    target: str
    kind: str
    manifest: str  # local manifest path as given to launch
    run_dirs: list[str]  # relative to the repo root / far workdir, one per run (a task may run several)
    job_dir: str  # far side
    handle: str  # tmux session name or Slurm array job id
    is_sweep: bool = False
    launched: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    pulled: list[str] = field(default_factory=list)
    task_of: list[int] | None = None  # the array task of each run_dir (None: one run per task, in order)


def _read(path: Path) -> dict:
    if not path.exists():
        return {"jobs": []}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("jobs"), list):
        raise ValueError(f"{path}:1: jobs: ledger is not {{'jobs': [...]}}")
    return data


def load_entries(path: Path = DEFAULT_LEDGER) -> list[LedgerEntry]:
    return [LedgerEntry(**row) for row in _read(Path(path))["jobs"]]


def add_entry(entry: LedgerEntry, path: Path = DEFAULT_LEDGER) -> None:
    path = Path(path)
    with locked(path):
        data = _read(path)
        if any(row["name"] == entry.name and row["target"] == entry.target for row in data["jobs"]):
            raise ValueError(f"{path}: job {entry.name!r} on {entry.target!r} is already in the ledger")
        data["jobs"].append(asdict(entry))
        atomic_write_json(path, data)


def mark_pulled(name: str, target: str, run_dir: str, path: Path = DEFAULT_LEDGER) -> None:
    path = Path(path)
    with locked(path):
        data = _read(path)
        for row in data["jobs"]:
            if row["name"] == name and row["target"] == target and run_dir not in row["pulled"]:
                row["pulled"].append(run_dir)
        atomic_write_json(path, data)


def select(entries: list[LedgerEntry], target: str, job: str | None = None) -> list[LedgerEntry]:
    """Jobs of `target`; with `job`, that one (by name or handle); default order: oldest first."""
    rows = [e for e in entries if e.target == target]
    if job is not None:
        rows = [e for e in rows if job in (e.name, e.handle)]
    return rows
