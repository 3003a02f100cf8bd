"""What a launch will run: the manifest text per task and the run folder the runner will use for it.

The run folders come from the runner itself (`python -m runner plan MANIFEST --json --no-preflight`, one JSON object per
manifest, a sweep's members included), so the ledger and `pull` agree with the far side by construction.
A sweep is expanded here (runner.sweep.expand_file) into array tasks: the members that differ only in kv go
in chunks of at most --chunk points (runner.sweep.grid_chunks), each task a narrowed sweep file that the far
runner scores as one group in one process (runner.sweep_exec); other members get one task each, as their
re-serialized manifest. Every task file is loaded back and must give the names and run keys the plan
printed, so the far side runs exactly what was planned.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from runner.plan import PlanError

DEFAULT_CHUNK = 16  # grid points per array task at most, where the grid allows (runner.sweep.grid_chunks)


@dataclass(frozen=True)
class PlannedTask:
    """One array task: a manifest (or a narrowed sweep whose members run as one group) and its run folders."""

    manifest_text: str
    run_dir: str  # relative: runs/<milestone>/<run_tag>
    more_run_dirs: tuple[str, ...] = ()  # the other members of a grouped task, in expansion order

    @property
    def run_dirs(self) -> list[str]:
        return [self.run_dir, *self.more_run_dirs]


def runner_plans(manifest: Path) -> list[dict]:
    """`python -m runner plan MANIFEST --json` → one dict per manifest; PlanError with the runner's lines."""
    proc = subprocess.run(
        # no preflight here: it loads models and checks devices, which is the far side's business (a laptop
        # planning a CUDA run has no CUDA); the far runner does its own preflight before scoring
        [sys.executable, "-m", "runner", "plan", str(manifest), "--json", "--no-preflight"],
        capture_output=True,
        text=True,
        check=False,
    )
    plans = []
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            plans.append(json.loads(line))
    problems = [p for plan in plans for p in plan.get("problems") or []]
    if proc.returncode != 0 or not plans or problems:
        lines = [f"{manifest}: {p}" for p in problems] or [proc.stderr.strip() or f"{manifest}: runner plan failed"]
        raise PlanError(lines)
    return plans


def _relative_run_dir(run_dir: str, root: Path) -> str:
    path = Path(run_dir)
    if path.is_absolute():
        path = path.resolve().relative_to(root.resolve())
    return path.as_posix()


def plan_tasks(
    manifest: Path, is_sweep: bool, *, root: Path | None = None, chunk: int = DEFAULT_CHUNK
) -> list[PlannedTask]:
    """The array tasks of a launch. A sweep's members that differ only in kv run as one task each chunk of at
    most `chunk` points (one process loads the models once and scores the points together); `chunk=1` gives
    one task per member."""
    root = root or Path.cwd()
    plans = runner_plans(manifest)
    if not is_sweep:
        if len(plans) != 1:
            raise PlanError([f"{manifest}: a sweep with {len(plans)} members; launch it with --sweep"])
        return [PlannedTask(manifest.read_text(encoding="utf-8"), _relative_run_dir(plans[0]["run_dir"], root))]
    return _sweep_tasks(manifest, plans, root, chunk)


def _sweep_tasks(manifest: Path, plans: list[dict], root: Path, chunk: int) -> list[PlannedTask]:
    from runner.sweep import expand_file, grid_chunks

    members = expand_file(manifest)
    if len(members) != len(plans):
        raise PlanError([f"{manifest}: runner planned {len(plans)} members but the sweep expands to {len(members)}"])
    keys = [plan["run_key"] for plan in plans]
    run_dirs = [_relative_run_dir(plan["run_dir"], root) for plan in plans]
    tasks = []
    with tempfile.TemporaryDirectory(prefix="qc2c-sweep-") as tmp:
        for n, (data, indices) in enumerate(grid_chunks(manifest, chunk)):
            text = _grouped_text(data, [members[i] for i in indices], [keys[i] for i in indices], Path(tmp) / f"g{n}")
            if text is not None:
                tasks.append(PlannedTask(text, run_dirs[indices[0]], tuple(run_dirs[i] for i in indices[1:])))
                continue
            for i in indices:  # one member per task
                text = _member_text(members[i], keys[i], Path(tmp) / f"{i}.yaml", manifest, i)
                tasks.append(PlannedTask(text, run_dirs[i]))
    return tasks


def _dump(data: dict) -> str:
    from ruamel.yaml import YAML

    buffer = io.StringIO()
    YAML(typ="safe", pure=True).dump(data, buffer)
    return buffer.getvalue()


def _member_text(member, key: str, path: Path, manifest: Path, i: int) -> str:
    from runner.manifest import load_manifest

    text = _dump(member.model_dump(mode="json", by_alias=True))
    path.write_text(text, encoding="utf-8")
    if load_manifest(path).run_key() != key:
        raise PlanError([f"{manifest}: member {i} does not round-trip to run key {key[:10]}"])
    return text


def _grouped_text(data: dict | None, members: list, keys: list[str], path: Path) -> str | None:
    """The narrowed sweep of a chunk, if it expands to exactly these members (names and run keys) on the far
    side; else None (its members then run one per task)."""
    from runner.manifest import ManifestError
    from runner.sweep import expand_file

    if data is None:
        return None
    text = _dump(data)
    path.write_text(text, encoding="utf-8")
    try:
        expanded = expand_file(path)
    except ManifestError:  # a chunk that does not stand alone (cannot happen for a valid sweep): member by member
        return None
    if [(m.name, m.run_key()) for m in expanded] != [(m.name, k) for m, k in zip(members, keys, strict=True)]:
        return None
    return text
