"""What a launch will run: the manifest text per task and the run folder the runner will use for it.

The run folders come from the runner itself (`python -m runner plan MANIFEST --json --no-preflight`, one JSON object per
manifest, a sweep's members included), so the ledger and `pull` agree with the far side by construction.
A sweep is expanded here (runner.sweep.expand_file), one manifest file per array task; each re-serialized
member is loaded back and must give the run key the plan printed, so the far side runs exactly what was
planned.
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


@dataclass(frozen=True)
class PlannedTask:
    manifest_text: str
    run_dir: str  # relative: runs/<milestone>/<run_tag>


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


def plan_tasks(manifest: Path, is_sweep: bool, *, root: Path | None = None) -> list[PlannedTask]:
    root = root or Path.cwd()
    plans = runner_plans(manifest)
    if not is_sweep:
        if len(plans) != 1:
            raise PlanError([f"{manifest}: a sweep with {len(plans)} members; launch it with --sweep"])
        return [PlannedTask(manifest.read_text(encoding="utf-8"), _relative_run_dir(plans[0]["run_dir"], root))]
    return _sweep_tasks(manifest, plans, root)


def _sweep_tasks(manifest: Path, plans: list[dict], root: Path) -> list[PlannedTask]:
    from ruamel.yaml import YAML

    from runner.manifest import load_manifest
    from runner.sweep import expand_file

    members = expand_file(manifest)
    if len(members) != len(plans):
        raise PlanError([f"{manifest}: runner planned {len(plans)} members but the sweep expands to {len(members)}"])
    tasks = []
    with tempfile.TemporaryDirectory(prefix="qc2c-sweep-") as tmp:
        for i, (member, plan) in enumerate(zip(members, plans, strict=True)):
            buffer = io.StringIO()
            YAML(typ="safe", pure=True).dump(member.model_dump(mode="json", by_alias=True), buffer)
            path = Path(tmp) / f"{i}.yaml"
            path.write_text(buffer.getvalue(), encoding="utf-8")
            if load_manifest(path).run_key() != plan["run_key"]:
                raise PlanError([f"{manifest}: member {i} does not round-trip to run key {plan['run_key'][:10]}"])
            tasks.append(PlannedTask(buffer.getvalue(), _relative_run_dir(plan["run_dir"], root)))
    return tasks
