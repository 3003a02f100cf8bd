"""What a launch will run: the manifest text per task and the run folder the runner will use for it.

The run folder comes from the runner itself (`python -m runner plan MANIFEST --json`), so the ledger
and `pull` agree with the far side by construction. A sweep is expanded here (runner.sweep.expand_file),
one manifest file per array task, so the far side runs exactly what was planned.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PlannedTask:
    manifest_text: str
    run_dir: str  # relative: runs/<milestone>/<run_tag>


class PlanError(ValueError):
    """The runner refused the manifest (its problems are the message lines)."""


def runner_plan(manifest: Path, *, cwd: Path | None = None) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "plan", str(manifest), "--json"],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )
    try:
        plan = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise PlanError(proc.stderr.strip() or f"{manifest}: runner plan printed no JSON") from None
    if proc.returncode != 0 or not plan.get("run_dir"):
        raise PlanError("\n".join(plan.get("problems") or [proc.stderr.strip() or f"{manifest}: no run_dir"]))
    return plan


def _relative_run_dir(run_dir: str, root: Path) -> str:
    path = Path(run_dir)
    if path.is_absolute():
        path = path.resolve().relative_to(root.resolve())
    return path.as_posix()


def plan_tasks(manifest: Path, is_sweep: bool, *, root: Path | None = None) -> list[PlannedTask]:
    root = root or Path.cwd()
    if not is_sweep:
        plan = runner_plan(manifest)
        return [PlannedTask(manifest.read_text(encoding="utf-8"), _relative_run_dir(plan["run_dir"], root))]
    from ruamel.yaml import YAML
    from runner.sweep import expand_file

    tasks = []
    with tempfile.TemporaryDirectory(prefix="qc2c-sweep-") as tmp:
        for i, combo in enumerate(expand_file(manifest)):
            buffer = io.StringIO()
            YAML(typ="safe", pure=True).dump(combo.model_dump(mode="json", by_alias=True), buffer)
            text = buffer.getvalue()
            path = Path(tmp) / f"{i}.yaml"
            path.write_text(text, encoding="utf-8")
            tasks.append(PlannedTask(text, _relative_run_dir(runner_plan(path)["run_dir"], root)))
    return tasks
