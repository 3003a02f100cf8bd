"""Job state from three witnesses: the scheduler (tmux / squeue → sacct), the launcher's task files
(state, exit_code) and the runner's own status.json. Pure functions; tasks.py feeds them command output.

The exit status never lies: a non-zero exit_code or a runner status.json saying "failed" makes the task
"failed" whatever tmux or Slurm report; "done" needs exit_code 0 (or a complete status.json once the
scheduler has let go of the job). A job that left squeue (no slurmdbd, past MinJobAge) falls back to sacct
and then to its own files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from remote.render import PROBE_MARK

STATES = ("pending", "running", "done", "failed")
SLURM_PENDING = {"PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "CONFIGURING", "RESV_DEL_HOLD", "SUSPENDED"}
SLURM_RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING"}
SLURM_DONE = {"COMPLETED"}
UNREACHABLE = "UNREACHABLE"  # squeue failed for another reason than an unknown job id: nobody can say
SLURM_FAILED = {
    "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED", "REVOKED",
}  # fmt: skip


@dataclass
class TaskFiles:
    """What the far side's files say about one task (None = file absent or unreadable)."""

    state: str | None = None
    exit_code: int | None = None
    run_status: dict | None = None


@dataclass
class TaskStatus:
    task: int
    state: str  # one of STATES
    reason: str
    n_done: int | None = None
    n_total: int | None = None
    eta_s: float | None = None
    run_state: str | None = None
    scheduler: str | None = None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class JobStatus:
    name: str
    tasks: list[TaskStatus] = field(default_factory=list)

    @property
    def state(self) -> str:
        """Worst-first roll-up: any failed → failed; any running → running; any pending → pending; else done."""
        states = {t.state for t in self.tasks}
        for state in ("failed", "running", "pending"):
            if state in states:
                return state
        return "done"


def parse_probe(text: str, n_tasks: int) -> list[TaskFiles]:
    """Split render.probe_command output into per-task files; a torn or missing file reads as None. A task
    that runs a sweep group prints one status.json per run: they are merged (`merge_run_status`)."""
    files = [TaskFiles() for _ in range(n_tasks)]
    chunks: list[tuple[int, str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith(PROBE_MARK + " "):
            _, task, what = line.split(" ", 2)
            chunks.append((int(task), what.strip(), []))
        elif chunks:
            chunks[-1][2].append(line)
    statuses: dict[int, list[dict | None]] = {}
    for task, what, lines in chunks:
        if task >= n_tasks:
            continue
        body = "\n".join(lines).strip()
        if what == "status_json":
            try:
                statuses.setdefault(task, []).append(json.loads(body) if body else None)
            except json.JSONDecodeError:
                statuses.setdefault(task, []).append(None)  # atomic writes: a bad file is not trusted
            continue
        if not body:
            continue
        if what == "state":
            files[task].state = body.split()[0]
        elif what == "exit_code":
            try:
                files[task].exit_code = int(body.split()[0])
            except ValueError:
                files[task].exit_code = None
    for task, runs in statuses.items():
        files[task].run_status = merge_run_status(runs)
    return files


def merge_run_status(runs: list[dict | None]) -> dict | None:
    """One status for the runs of a task: summed progress, the worst state (failed > preempted > running >
    complete; a run without a readable status.json counts as not complete), the longest ETA."""
    if len(runs) == 1:
        return runs[0] if isinstance(runs[0], dict) else None
    known = [r for r in runs if isinstance(r, dict)]
    if not known:
        return None
    states = [r.get("state") for r in known] + (["running"] if len(known) < len(runs) else [])
    worst = next((s for s in ("failed", "preempted", "running") if s in states), "complete")
    datasets = {f"{i}:{name}": d for i, r in enumerate(known) for name, d in (r.get("datasets") or {}).items()}
    etas = [r["eta_s"] for r in known if isinstance(r.get("eta_s"), int | float)]
    return {"state": worst, "datasets": datasets, "eta_s": max(etas) if etas else None}


def parse_squeue(text: str) -> dict[int, str]:
    """`squeue -h -r -o %i|%T` → {array task: STATE}; `123_4` is task 4, a plain `123` is task 0."""
    return _parse_ids(line.split("|") for line in text.splitlines() if line.strip())


def squeue_lost_the_job(stderr: str) -> bool:
    """squeue's answer for a job id it no longer holds (purged past MinJobAge), as opposed to a failure to ask."""
    return "invalid job id" in stderr.lower()


def parse_sacct(text: str) -> dict[int, str]:
    """`sacct -n -X -P -o JobID,State,ExitCode` → {array task: STATE} ("CANCELLED by 0" → CANCELLED)."""
    rows = (line.split("|") for line in text.splitlines() if line.strip())
    return _parse_ids([row[0], row[1].split()[0] if row[1].strip() else ""] for row in rows if len(row) >= 2)


def _parse_ids(rows) -> dict[int, str]:
    out: dict[int, str] = {}
    for row in rows:
        if len(row) < 2 or not row[1]:
            continue
        job_id, state = row[0].strip(), row[1].strip()
        if "_" in job_id:
            suffix = job_id.split("_", 1)[1]
            if suffix.isdigit():
                out[int(suffix)] = state
            # `123_[0-3]` (pending, not yet split): every listed task is pending
            elif suffix.startswith("["):
                for task in _expand_range(suffix.strip("[]").split("%")[0]):
                    out[task] = state
        elif job_id.isdigit():
            out[0] = state
    return out


def _expand_range(spec: str) -> list[int]:
    tasks: list[int] = []
    for part in spec.split(","):
        if "-" in part:
            lo, hi = part.split("-", 1)
            tasks.extend(range(int(lo), int(hi) + 1))
        elif part.isdigit():
            tasks.append(int(part))
    return tasks


def _progress(run_status: dict | None) -> tuple[int | None, int | None, float | None, str | None]:
    if not isinstance(run_status, dict):
        return None, None, None, None
    datasets = run_status.get("datasets") or {}
    n_done = sum(int(d.get("n_done", 0)) for d in datasets.values() if isinstance(d, dict))
    n_total = sum(int(d.get("n_total", 0)) for d in datasets.values() if isinstance(d, dict))
    eta = run_status.get("eta_s")
    return n_done, n_total, (float(eta) if isinstance(eta, int | float) else None), run_status.get("state")


def decide(task: int, files: TaskFiles, scheduler: str | None, *, kind: str) -> TaskStatus:
    """One task's state. `scheduler` is the Slurm state (squeue, else sacct), or for RunPod "ALIVE"/"GONE"
    (tmux has-session); None when no scheduler knows the job any more."""
    n_done, n_total, eta, run_state = _progress(files.run_status)

    def out(state: str, reason: str) -> TaskStatus:
        return TaskStatus(task, state, reason, n_done, n_total, eta, run_state, scheduler)

    if files.state == "cancelled":
        return out("failed", f"cancelled (runner exited {files.exit_code})")
    if files.exit_code is not None and files.exit_code != 0:
        return out("failed", f"runner exited {files.exit_code}")
    if run_state == "failed":
        return out("failed", "runner status.json says failed")
    if files.exit_code == 0:
        return out("done", "runner exited 0")
    if kind == "slurm" and scheduler == UNREACHABLE:
        if run_state == "complete":
            return out("done", "run complete (status.json); squeue did not answer")
        # a controller that does not answer says nothing about the job: never call it gone on that
        return out("running" if files.state == "running" else "pending", "squeue failed; state from the job's files")
    if kind == "slurm" and scheduler is not None:
        if scheduler in SLURM_FAILED:
            return out("failed", f"slurm says {scheduler} and the runner left no exit code")
        if scheduler in SLURM_PENDING:
            return out("pending", f"slurm {scheduler}")
        if scheduler in SLURM_RUNNING:
            return out("running", f"slurm {scheduler}")
        if scheduler in SLURM_DONE:
            # COMPLETED without our exit_code file: the script did not finish its bookkeeping
            return out("failed", "slurm says COMPLETED but the task wrote no exit code")
        return out("pending", f"slurm {scheduler}")
    if kind == "runpod" and scheduler == "ALIVE":
        return out("running" if files.state else "pending", "tmux session alive")
    # no scheduler witness left: the job's own files decide
    if run_state == "complete":
        return out("done", "run complete (status.json); launcher left no exit code")
    if files.state == "requeued" and kind == "slurm":
        return out("failed", "requeued but no longer known to slurm")
    if files.state is None and kind == "runpod":
        return out("failed", "tmux session gone and the launcher never started")
    return out("failed", f"{'tmux session' if kind == 'runpod' else 'slurm job'} gone without an exit code")


def format_status(status: JobStatus) -> list[str]:
    lines = []
    for t in status.tasks:
        progress = f"{t.n_done}/{t.n_total}" if t.n_total is not None else "-/-"
        eta = f"eta {t.eta_s:.0f}s" if t.eta_s is not None else ""
        lines.append(f"{status.name}[{t.task}] {t.state:<8} {progress:>9} {eta:<10} ({t.reason})")
    return lines
