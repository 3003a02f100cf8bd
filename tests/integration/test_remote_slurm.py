"""Slurm path against a real one-node Slurm (munge + slurmctld + slurmd on loopback) reached through a real
sshd: sync → launch (sbatch array) → status → pull; USR1 requeue resumes the same run; status after squeue
forgets the job (no slurmdbd here, so sacct fails too and the job's own files decide).

Run: .venv/bin/python -m pytest tests/integration/test_remote_slurm.py -q   (root; slurm-wlm munge openssh-server)
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from remote import ledger, tasks
from remote.__main__ import main
from remote.connect import connect
from remote.planning import PlannedTask
from remote.targets import Target

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "remote"))
from infra import slurm as slurm_infra  # noqa: E402
from infra import sshd as sshd_infra  # noqa: E402
from infra import wait_until  # noqa: E402
from standin_runner import run_dir_of  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
WHY = sshd_infra.unavailable() or slurm_infra.unavailable()
pytestmark = [pytest.mark.slurm, pytest.mark.skipif(bool(WHY), reason=f"slurm tier: {WHY}")]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with slurm_infra.SlurmCluster(tmp_path_factory.mktemp("slurm")) as running:
        yield running


@pytest.fixture(scope="module")
def far(tmp_path_factory, cluster) -> dict:
    root = tmp_path_factory.mktemp("far")
    env_file = root / "qc2c.env"
    env_file.write_text(f"export SLURM_CONF={cluster.conf}\n")
    with sshd_infra.SshDaemon(tmp_path_factory.mktemp("sshd")) as sshd:
        fields = sshd.target_fields() | {
            "kind": "slurm",
            "workdir": str(root / "qc2c"),
            "env_file": str(env_file),
            "venv": str(REPO / ".venv"),
            "run_command": ["python", "tests/remote/standin_runner.py"],
            "slurm": {"partition": cluster.partition, "cpus": 1, "mem": "500M", "time": "00:10:00"},
        }
        local = tmp_path_factory.mktemp("local")
        targets = local / "targets.yaml"
        real = {k: v for k, v in fields.items() if k != "run_command"}  # the real runner: python -m runner run
        real["slurm"] = {"partition": cluster.partition, "cpus": 2, "mem": "6G", "time": "00:20:00"}
        YAML().dump({"targets": {"hpc": fields, "real": real}}, targets.open("w"))
        common = ["--targets", str(targets), "--ledger", str(local / "runs" / "remote_jobs.json")]
        assert main([*common, "--repo", str(REPO), "sync", "hpc"]) == 0
        yield {"target": Target.model_validate({**fields, "name": "hpc"}), "local": local, "common": common}


def launch_standin(far: dict, tmp_path: Path, *specs: dict) -> ledger.LedgerEntry:
    texts = [json.dumps({"name": f"s{i}", "milestone": "remote_test", "standin": s}) for i, s in enumerate(specs)]
    planned = [PlannedTask(t, run_dir_of(json.loads(t))[0].as_posix()) for t in texts]
    manifest = tmp_path / "standin.yaml"
    manifest.write_text(texts[0])
    return tasks.launch(
        far["target"],
        manifest,
        is_sweep=len(specs) > 1,
        ledger_path=far["local"] / "runs" / "remote_jobs.json",
        planner=lambda _m, _s: planned,
    )


def wait_state(far: dict, entry: ledger.LedgerEntry, predicate, timeout_s: float = 60):
    conn = connect(far["target"])
    seen = {}

    def reached() -> bool:
        seen["status"] = tasks.job_status(conn, far["target"], entry)
        return predicate(seen["status"])

    wait_until(reached, timeout_s, f"job {entry.name} ({seen.get('status')})", 0.3)
    return seen["status"]


def start_requeued_task_now(cluster, job_id: str) -> None:
    """Start a requeued task without Slurm's ~120 s requeue delay, but never in the wall-clock second of the
    kill that requeued it: slurmd compares credential times in whole seconds and refuses a relaunch from that
    second ("Job N already killed, do not launch batch job"), which is why Slurm defers requeued jobs at all."""
    time.sleep(1.0 + (1.0 - time.time() % 1.0))
    subprocess.run(["scontrol", "update", f"JobId={job_id}_0", "StartTime=now"], check=True, env=cluster.env)


def squeue(cluster, job_id: str) -> str:
    return subprocess.run(
        ["squeue", "-h", "-r", "-t", "all", "-j", job_id, "-o", "%i|%T"],
        capture_output=True,
        text=True,
        env=cluster.env,
    ).stdout.strip()


def test_launch_status_pull_and_status_after_job_left_squeue(far, cluster, tmp_path, capsys):
    entry = launch_standin(far, tmp_path, {"n_samples": 3, "sleep_s": 0.2})
    assert entry.handle.isdigit() and entry.kind == "slurm"
    status = wait_state(far, entry, lambda s: s.state in ("done", "failed"))
    assert status.state == "done" and (status.tasks[0].n_done, status.tasks[0].n_total) == (3, 3), status
    script = (Path(entry.job_dir) / "job.sbatch").read_text()
    assert "#SBATCH --requeue" in script and "#SBATCH --array=0-0" in script
    assert main([*far["common"], "--repo", str(far["local"]), "pull", "hpc", "--job", entry.name]) == 0
    assert (far["local"] / entry.run_dirs[0] / "results" / "mini.json").is_file()
    # MinJobAge=5: the job leaves squeue (even -t all); sacct has no database here; the job's own files decide
    wait_until(lambda: squeue(cluster, entry.handle) == "", 30, "job to leave squeue", 0.5)
    status = wait_state(far, entry, lambda s: True)
    assert status.state == "done" and status.tasks[0].scheduler is None
    capsys.readouterr()
    assert main([*far["common"], "status", "hpc", "--job", entry.name, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["state"] == "done"


def test_failing_job_reports_failed_whatever_slurm_says(far, tmp_path):
    entry = launch_standin(far, tmp_path, {"n_samples": 3, "sleep_s": 0.05, "fail_at": 1})
    first = wait_state(far, entry, lambda s: s.state in ("done", "failed"))
    assert first.state == "failed", first  # failed from the first look on: status.json or the exit code
    # once the batch script has recorded the runner's exit code, that is the reason given
    final = wait_state(far, entry, lambda s: s.tasks[0].reason == "runner exited 1")
    assert final.state == "failed", final


def test_sweep_is_one_job_array(far, tmp_path):
    entry = launch_standin(far, tmp_path, {"n_samples": 2, "sleep_s": 0.05}, {"n_samples": 3, "sleep_s": 0.05})
    status = wait_state(far, entry, lambda s: s.state in ("done", "failed"))
    assert [t.state for t in status.tasks] == ["done", "done"], status
    assert [t.n_total for t in status.tasks] == [2, 3]
    assert len(set(entry.run_dirs)) == 2 and len(list(Path(entry.job_dir).glob("slurm-*_*.out"))) == 2


def test_usr1_requeues_and_resumes_the_same_run_without_duplicates(far, cluster, tmp_path):
    entry = launch_standin(far, tmp_path, {"n_samples": 40, "sleep_s": 0.15})
    wait_state(far, entry, lambda s: s.state == "running" and (s.tasks[0].n_done or 0) >= 3)
    # what --signal=B:USR1@120 does before the time limit, delivered now
    subprocess.run(["scancel", "--batch", "--signal=USR1", entry.handle], check=True, env=cluster.env)
    status = wait_state(far, entry, lambda s: s.state == "pending", 30)
    assert status.tasks[0].run_state == "preempted" and 3 <= status.tasks[0].n_done < 40
    start_requeued_task_now(cluster, entry.handle)
    status = wait_state(far, entry, lambda s: s.state in ("done", "failed"), 60)
    assert status.state == "done", status
    ids = [
        json.loads(line)["id"]
        for line in (Path(far["target"].workdir) / entry.run_dirs[0] / "progress" / "mini.jsonl")
        .read_text()
        .splitlines()
    ]
    assert ids == [f"mini-{i}" for i in range(40)], "every sample exactly once, in order, across the requeue"
    log = next(Path(entry.job_dir).glob("slurm-*_0.out")).read_text()
    assert "restart 0" in log and "restart 1" in log and "requeueing" in log, log
    starts = [int(n) for n in re.findall(r"standin: resuming at (\d+)/40", log)]
    assert len(starts) == 2 and starts[0] == 0 and starts[1] >= 3, log


@pytest.mark.slow
def test_real_smoke_manifest_requeued_on_usr1_resumes_then_pull_merge(far, cluster, capsys):
    """The smoke manifest's settings (one item per batch) through the real runner as a Slurm job, preempted once mid-run (USR1 → flush, exit
    75 → requeue), resumed in the same run folder with every sample scored exactly once, pulled and merged."""
    common, local = far["common"], far["local"]
    assert main([*common, "--repo", str(REPO), "sync", "real", "--git"]) == 0
    # the smoke settings one item per batch: a run of 5 batches can end between the look and the signal
    manifest = REPO / "tests" / "data" / "manifests" / "good" / "good_smoke_batch1.yaml"
    assert main([*common, "launch", "real", str(manifest)]) == 0
    entry = ledger.select(ledger.load_entries(local / "runs" / "remote_jobs.json"), "real")[-1]
    real = far["target"].model_copy(update={"name": "real", "run_command": ["python", "-m", "runner", "run"]})
    here = {**far, "target": real}
    status = wait_state(here, entry, lambda s: s.state != "pending" and (s.tasks[0].n_done or 0) > 0, 300)
    assert status.state == "running" and status.tasks[0].n_done < status.tasks[0].n_total, status
    subprocess.run(["scancel", "--batch", "--signal=USR1", entry.handle], check=True, env=cluster.env)
    status = wait_state(here, entry, lambda s: s.state != "running", 120)
    assert status.state == "pending" and status.tasks[0].run_state == "preempted", status
    n_before = status.tasks[0].n_done
    start_requeued_task_now(cluster, entry.handle)
    status = wait_state(here, entry, lambda s: s.state in ("done", "failed"), 400)
    log = next(Path(entry.job_dir).glob("slurm-*_0.out")).read_text()
    assert status.state == "done", (status, log[-3000:])
    progress = Path(real.workdir) / entry.run_dirs[0] / "progress" / "mini.jsonl"
    ids = [json.loads(line)["id"] for line in progress.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == status.tasks[0].n_total, "every sample exactly once across the requeue"
    assert "restart 1" in log and "requeueing" in log and 0 < n_before < len(ids)
    capsys.readouterr()
    assert main([*common, "--repo", str(local), "pull", "real", "--job", entry.name]) == 0
    assert main([*common, "--repo", str(local), "merge", "real", "--job", entry.name, "--allow", "dirty"]) == 0, (
        capsys.readouterr().err
    )
    golden = json.loads((local / "golden" / "golden_runs.json").read_text())
    assert any(entry.run_dirs[0] in json.dumps(row) for row in golden["rows"].values())


@pytest.mark.slow
def test_real_sweep_runs_one_array_task_per_group_and_pulls_every_point(far, tmp_path, capsys):
    """A 2 × 2 grid (eval.limit × kv.quant.scheme) through the real runner: the points that differ only in kv
    share an array task (one process scores them as a group), so 4 runs are 2 tasks; status sums a task's
    runs; pull brings back every run folder with its own results."""
    common, local = far["common"], far["local"]
    assert main([*common, "--repo", str(REPO), "sync", "real", "--git"]) == 0
    (tmp_path / "smoke.yaml").write_text((REPO / "manifests" / "smoke.yaml").read_text())
    sweep = tmp_path / "grid.yaml"
    sweep.write_text("include: smoke.yaml\nname: rgrid\ngrid:\n  eval.limit: [2, 3]\n  kv.quant.scheme: [int8, int4]\n")
    assert main([*common, "launch", "real", str(sweep), "--sweep"]) == 0
    assert "2 task(s)" in capsys.readouterr().out
    entry = ledger.select(ledger.load_entries(local / "runs" / "remote_jobs.json"), "real")[-1]
    assert entry.task_of == [0, 0, 1, 1] and len(set(entry.run_dirs)) == 4
    real = far["target"].model_copy(update={"name": "real", "run_command": ["python", "-m", "runner", "run"]})
    status = wait_state({**far, "target": real}, entry, lambda s: s.state in ("done", "failed"), 400)
    logs = {p.name: p.read_text() for p in Path(entry.job_dir).glob("slurm-*_*.out")}
    assert status.state == "done", (status, [log[-2000:] for log in logs.values()])
    assert [t.n_total for t in status.tasks] == [2 * 2, 2 * 3]  # each task: its two points' items
    assert len(logs) == 2 and all("sweep group: 2 grid points" in log for log in logs.values()), logs
    assert main([*common, "--repo", str(local), "pull", "real", "--job", entry.name]) == 0
    for run_dir in entry.run_dirs:
        result = json.loads((local / run_dir / "results" / "mini.json").read_text())
        assert result["kv"]["quant"]["scheme"] in run_dir and result["run_key"][:10] in run_dir
