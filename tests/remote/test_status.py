"""Status from a fake scheduler (the one place mocks are allowed). Run: .venv/bin/python -m pytest tests/remote/test_status.py -q"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from remote import ledger, render
from remote.status import TaskFiles, decide, parse_probe, parse_sacct, parse_squeue
from remote.targets import Target
from remote.tasks import conflicts_from_dry_run, job_status

SLURM = Target(name="c", kind="slurm", host="h", workdir="/w", env_file="/w/env")
RUNPOD = Target(name="p", kind="runpod", host="h", workdir="/w")


@dataclass
class FakeResult:
    stdout: str
    exited: int = 0
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.exited == 0


class FakeScheduler:
    """Stands in for the far shell: answers squeue/sacct/tmux/probe commands from canned text, records calls."""

    def __init__(
        self, *, probe: str = "", squeue: str | FakeResult = "", sacct: str | None = None, tmux_alive: bool = False
    ):
        self.answers = {"squeue": squeue, "sacct": sacct, "probe": probe}
        self.tmux_alive = tmux_alive
        self.calls: list[str] = []

    def run(self, command: str, warn: bool = False, hide: bool = True) -> FakeResult:
        self.calls.append(command)
        if "squeue " in command:
            squeue = self.answers["squeue"]
            return squeue if isinstance(squeue, FakeResult) else FakeResult(squeue)
        if "sacct " in command:
            sacct = self.answers["sacct"]
            return FakeResult("", 1) if sacct is None else FakeResult(sacct)
        if "tmux has-session" in command:
            return FakeResult("", 0 if self.tmux_alive else 1)
        if render.PROBE_MARK in command:
            return FakeResult(self.answers["probe"])
        raise AssertionError(f"unexpected command {command!r}")


def probe(*tasks: tuple[str | None, int | None, dict | None]) -> str:
    out = []
    for i, (state, code, status) in enumerate(tasks):
        out += [f"{render.PROBE_MARK} {i} state", state or "", f"{render.PROBE_MARK} {i} exit_code"]
        out += ["" if code is None else str(code), f"{render.PROBE_MARK} {i} status_json"]
        out += [json.dumps(status) if status else "", ""]
    return "\n".join(out) + "\n"


def run_status(state: str, n_done: int, n_total: int, eta: float | None = None) -> dict:
    return {"state": state, "datasets": {"mini": {"n_done": n_done, "n_total": n_total, "n_errors": 0}}, "eta_s": eta}


def entry(target: Target, n: int = 1) -> ledger.LedgerEntry:
    return ledger.LedgerEntry(
        name="smoke-1",
        target=target.name,
        kind=target.kind,
        manifest="m.yaml",
        run_dirs=[f"runs/smoke/s{i}-0123456789" for i in range(n)],
        job_dir="/w/runs/remote/smoke-1",
        handle="17" if target.kind == "slurm" else "smoke-1",
    )


def test_running_slurm_task_reports_progress_and_eta():
    fake = FakeScheduler(squeue="17_0|RUNNING\n", probe=probe(("running", None, run_status("running", 3, 8, 12.5))))
    status = job_status(fake, SLURM, entry(SLURM))
    task = status.tasks[0]
    assert (task.state, task.n_done, task.n_total, task.eta_s) == ("running", 3, 8, 12.5)
    assert not any("sacct" in c for c in fake.calls), "sacct is only asked when squeue no longer knows the task"
    assert all(c.startswith("if [ -f /w/env ]") for c in fake.calls), "scheduler commands source the env file"


def test_failed_runner_is_failed_whatever_slurm_says():
    fake = FakeScheduler(squeue="17_0|COMPLETING\n", probe=probe(("failed", 1, run_status("failed", 2, 8))))
    assert job_status(fake, SLURM, entry(SLURM)).state == "failed"


def test_failed_runner_is_failed_even_if_tmux_still_alive():
    fake = FakeScheduler(tmux_alive=True, probe=probe(("running", None, run_status("failed", 2, 8))))
    assert job_status(fake, RUNPOD, entry(RUNPOD)).tasks[0].state == "failed"


def test_status_after_job_left_squeue_falls_back_to_sacct_then_own_files():
    done = probe(("done", 0, run_status("complete", 8, 8)))
    fake = FakeScheduler(squeue="", sacct=None, probe=done)  # no slurmdbd: sacct fails
    result = job_status(fake, SLURM, entry(SLURM))
    assert result.state == "done" and result.tasks[0].scheduler is None
    assert any("sacct" in c for c in fake.calls)
    fake = FakeScheduler(squeue="", sacct="17_0|FAILED|1:0\n", probe=probe(("running", None, None)))
    assert job_status(fake, SLURM, entry(SLURM)).tasks[0].reason.startswith("slurm says FAILED")


def test_job_that_vanished_without_exit_code_is_failed_not_running():
    fake = FakeScheduler(squeue="", sacct=None, probe=probe(("running", None, run_status("running", 3, 8))))
    assert job_status(fake, SLURM, entry(SLURM)).state == "failed"
    fake = FakeScheduler(tmux_alive=False, probe=probe(("running", None, None)))
    assert job_status(fake, RUNPOD, entry(RUNPOD)).state == "failed"


def test_requeued_task_is_pending():
    fake = FakeScheduler(squeue="17_0|PENDING\n", probe=probe(("requeued", None, run_status("preempted", 4, 8))))
    assert job_status(fake, SLURM, entry(SLURM)).state == "pending"


def test_unanswered_squeue_never_makes_a_live_job_failed():
    """A controller that does not answer (timeout, restart) says nothing about the job: the files decide,
    and only a terminal verdict in them (exit code, status.json) ends the task."""
    down = FakeResult("", 1, "slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n")
    for state, expected in (("requeued", "pending"), ("running", "running"), (None, "pending")):
        fake = FakeScheduler(squeue=down, sacct=None, probe=probe((state, None, run_status("running", 3, 8))))
        task = job_status(fake, SLURM, entry(SLURM)).tasks[0]
        assert (task.state, task.scheduler) == (expected, "UNREACHABLE"), task
        assert not any("sacct" in c for c in fake.calls)
    fake = FakeScheduler(squeue=down, probe=probe(("running", 1, run_status("failed", 3, 8))))
    assert job_status(fake, SLURM, entry(SLURM)).state == "failed"
    fake = FakeScheduler(squeue=down, probe=probe(("running", None, run_status("complete", 8, 8))))
    assert job_status(fake, SLURM, entry(SLURM)).state == "done"


def test_squeue_that_no_longer_knows_the_job_falls_back_to_sacct_and_files():
    purged = FakeResult("", 1, "slurm_load_jobs error: Invalid job id specified\n")
    fake = FakeScheduler(squeue=purged, sacct=None, probe=probe(("requeued", None, run_status("preempted", 3, 8))))
    task = job_status(fake, SLURM, entry(SLURM)).tasks[0]
    assert (task.state, task.scheduler) == ("failed", None) and any("sacct" in c for c in fake.calls)


def test_array_rollup_worst_first():
    fake = FakeScheduler(
        squeue="17_1|RUNNING\n17_[2]|PENDING\n",
        probe=probe(("done", 0, run_status("complete", 8, 8)), ("running", None, None), (None, None, None)),
    )
    result = job_status(fake, SLURM, entry(SLURM, 3))
    assert [t.state for t in result.tasks] == ["done", "running", "pending"]
    assert result.state == "running"


def test_parse_squeue_and_sacct_shapes():
    assert parse_squeue("17_0|RUNNING\n17_[1-3,5%2]|PENDING\n") == {
        0: "RUNNING",
        1: "PENDING",
        2: "PENDING",
        3: "PENDING",
        5: "PENDING",
    }
    assert parse_squeue("18|PENDING\n") == {0: "PENDING"}
    assert parse_sacct("17_0|CANCELLED by 0|0:15\n17_1|COMPLETED|0:0\n") == {0: "CANCELLED", 1: "COMPLETED"}


def test_parse_probe_tolerates_missing_and_garbage_files():
    text = probe(("running", None, None)) + f"{render.PROBE_MARK} 1 state\n"
    files = parse_probe(
        text.replace(f"{render.PROBE_MARK} 0 status_json\n", f"{render.PROBE_MARK} 0 status_json\n{{torn"), 2
    )
    assert files[0].state == "running" and files[0].run_status is None and files[1] == TaskFiles()


@pytest.mark.parametrize(
    "files,scheduler,kind,expected",
    [
        (TaskFiles("done", 0, None), None, "slurm", "done"),
        (TaskFiles(None, None, None), "PENDING", "slurm", "pending"),
        (TaskFiles("running", None, None), "COMPLETED", "slurm", "failed"),  # no exit code: bookkeeping lost
        (TaskFiles("requeued", None, None), "PREEMPTED", "slurm", "failed"),
        (TaskFiles("cancelled", 143, None), None, "runpod", "failed"),
        (TaskFiles(None, None, {"state": "complete", "datasets": {}}), None, "runpod", "done"),
        (TaskFiles("running", 0, {"state": "failed", "datasets": {}}), None, "runpod", "failed"),
    ],
)
def test_decide_table(files, scheduler, kind, expected):
    assert decide(0, files, scheduler, kind=kind).state == expected


def test_pull_conflicts_are_files_that_exist_and_differ():
    dry = ">f+++++++++ results/mini.json\n>fcs.t...... status.json\ncd+++++++++ logs/\n.d..t...... ./\n>f.st...... logs/run.log\n"
    assert conflicts_from_dry_run(dry) == ["status.json", "logs/run.log"]


def test_a_task_running_a_sweep_group_sums_its_runs_and_reports_the_worst_state():
    from remote.status import merge_run_status

    def status(state, n_done, n_total, eta=None):
        return json.dumps({"state": state, "datasets": {"mini": {"n_done": n_done, "n_total": n_total}}, "eta_s": eta})

    text = "\n".join(
        [
            f"{render.PROBE_MARK} 0 state",
            "running",
            f"{render.PROBE_MARK} 0 exit_code",
            f"{render.PROBE_MARK} 0 status_json",
            status("complete", 3, 3),
            f"{render.PROBE_MARK} 0 status_json",
            status("running", 1, 3, 12.0),
        ]
    )
    [files] = parse_probe(text, 1)
    assert files.run_status["state"] == "running" and files.run_status["eta_s"] == 12.0
    assert sum(d["n_done"] for d in files.run_status["datasets"].values()) == 4
    done = {"state": "complete", "datasets": {}}
    assert merge_run_status([done, None])["state"] == "running"  # an unreadable run is not complete
    assert merge_run_status([done, {"state": "failed"}])["state"] == "failed"
    assert merge_run_status([done, done])["state"] == "complete"


def test_job_task_of_must_number_every_run_and_every_task():
    from pydantic import ValidationError

    Job = render.Job

    target = Target.model_validate({"name": "t", "kind": "runpod", "host": "127.0.0.1", "workdir": "/w"})
    dirs = ["runs/m/a-1", "runs/m/b-2", "runs/m/c-3"]
    job = Job(name="j", target=target, run_dirs=dirs, task_of=[0, 0, 1])
    assert job.n_tasks == 2 and job.task_run_dirs(0) == dirs[:2] and job.task_run_dirs(1) == dirs[2:]
    assert Job(name="j", target=target, run_dirs=dirs).n_tasks == 3
    for bad in ([0, 1], [0, 2, 2]):
        with pytest.raises(ValidationError):
            Job(name="j", target=target, run_dirs=dirs, task_of=bad)
