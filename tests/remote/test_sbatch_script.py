"""The rendered sbatch script's preemption path, run by bash with a stand-in `scontrol` (no Slurm needed; the
real requeue round trip is tests/integration/test_remote_slurm.py). Run: .venv/bin/python -m pytest tests/remote/test_sbatch_script.py -q"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from remote import render
from remote.targets import Target

# `scontrol requeue` that succeeds returns, and Slurm kills the batch script (TERM) a moment later
SCONTROL_REQUEUES = (
    '#!/usr/bin/env bash\necho "$@" >> "$SCONTROL_LOG"\n'
    "(sleep 0.5; grep -q '^State:\\s*[^Z]' /proc/$PPID/status 2>/dev/null && kill -TERM $PPID"  # alive, not a zombie
    ' && echo killed >> "$SCONTROL_LOG") > /dev/null 2>&1 &\n'
)
SCONTROL_REFUSES = (
    '#!/usr/bin/env bash\necho "$@" >> "$SCONTROL_LOG"\necho "scontrol: error: requeue refused" >&2\nexit 1\n'
)


def run_script(tmp_path: Path, runner_exit: int, scontrol: str) -> tuple[subprocess.CompletedProcess, Path]:
    target = Target(
        name="hpc",
        kind="slurm",
        host="127.0.0.1",
        workdir=str(tmp_path / "work"),
        venv=str(tmp_path),
        run_command=["runner"],
    )
    job = render.Job(name="j-1", target=target, run_dirs=["runs/smoke/s-0123456789"])
    job_dir = Path(job.job_dir)
    (job_dir / "manifests").mkdir(parents=True)
    (job_dir / "manifests" / "0.yaml").write_text("{}\n")
    bin_dir = tmp_path / "bin"  # the venv's bin, first on the script's PATH
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(scontrol)
    (bin_dir / "scontrol").chmod(0o755)
    (bin_dir / "runner").write_text(f"#!/usr/bin/env bash\nexit {runner_exit}\n")
    (bin_dir / "runner").chmod(0o755)
    script = tmp_path / "job.sbatch"
    script.write_text(render.sbatch_script(job))
    env = {**os.environ, "SLURM_JOB_ID": "41", "SLURM_ARRAY_TASK_ID": "0", "SCONTROL_LOG": str(tmp_path / "calls")}
    result = subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    return result, job_dir / "task-0"


def wait_for_line(path: Path, line: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while line not in path.read_text().split() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_preempted_task_requeues_and_waits_for_the_kill(tmp_path):
    result, task = run_script(tmp_path, 75, SCONTROL_REQUEUES)
    assert result.returncode == 0, result.stderr
    # still alive when the kill came: exiting first races Slurm's kill, and slurmd then refuses the relaunch
    wait_for_line(tmp_path / "calls", "killed")
    assert (tmp_path / "calls").read_text().split() == ["requeue", "41", "killed"]
    assert (task / "state").read_text().strip() == "requeued" and not (task / "exit_code").exists()


def test_refused_requeue_is_a_recorded_failure_not_a_silent_exit(tmp_path):
    result, task = run_script(tmp_path, 75, SCONTROL_REFUSES)
    assert result.returncode == 75 and "scontrol requeue failed" in result.stdout
    assert (task / "state").read_text().strip() == "failed" and (task / "exit_code").read_text().strip() == "75"


@pytest.mark.parametrize("code,state", [(0, "done"), (3, "failed")])
def test_finished_task_records_its_exit_code(tmp_path, code, state):
    result, task = run_script(tmp_path, code, SCONTROL_REFUSES)
    assert result.returncode == code and not (tmp_path / "calls").exists()
    assert (task / "state").read_text().strip() == state and (task / "exit_code").read_text().strip() == str(code)
