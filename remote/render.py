"""Pure renderers: validated pydantic objects in, shell text / argv out. Nothing here connects or runs.

Why: every string that reaches a remote shell is built in one place, from names checked against
`targets.NAME_RE` *before* quoting (a hostile name is refused, never escaped into something surprising),
with every interpolated value passed through `shlex.quote` (submitit's `_as_sbatch_flag` habit). The
rendered texts are compared line by line with tests/remote/records/*.txt.

Far-side layout of one job (`<workdir>/runs/remote/<job name>/`, under runs/ so `sync --delete` never
touches it): launch.sh or job.sbatch, manifests/<i>.yaml, secrets.env (mode 600), job.log (RunPod) or
slurm-<array job>_<task>.out (Slurm), task-<i>/state (running|requeued|done|failed|cancelled) and
task-<i>/exit_code (each written to a temp name and renamed, so a reader never sees half a file).
"""

from __future__ import annotations

import os
import shlex
from pathlib import PurePosixPath

from pydantic import BaseModel, Field, field_validator, model_validator

from remote.targets import Target, check_name, check_remote_path

JOBS_SUBDIR = "runs/remote"
PROBE_MARK = "@@qc2c"


class Job(BaseModel):
    """One launch: a single manifest (one task) or a sweep (one task per group chunk or lone member)."""

    name: str
    target: Target
    run_dirs: list[str] = Field(min_length=1)  # relative to workdir, e.g. runs/smoke/smoke-0123456789
    is_sweep: bool = False
    task_of: list[int] | None = None  # the array task of each run_dir (None: run_dir i is task i)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value, "job name")

    @field_validator("run_dirs")
    @classmethod
    def _run_dirs(cls, value: list[str]) -> list[str]:
        for run_dir in value:
            parts = PurePosixPath(run_dir).parts
            if len(parts) < 2 or parts[0] != "runs":
                raise ValueError(f"run_dir {run_dir!r} must be runs/<milestone>/<run_tag>")
            for part in parts[1:]:
                check_name(part, "run_dir component")
        return value

    @model_validator(mode="after")
    def _tasks(self) -> Job:
        if self.task_of is not None:
            if len(self.task_of) != len(self.run_dirs):
                raise ValueError(f"task_of has {len(self.task_of)} entries for {len(self.run_dirs)} run_dirs")
            if sorted(set(self.task_of)) != list(range(max(self.task_of) + 1)):
                raise ValueError("task_of must number the tasks 0..n-1")
        return self

    @property
    def n_tasks(self) -> int:
        return len(self.run_dirs) if self.task_of is None else max(self.task_of) + 1

    def task_run_dirs(self, task: int) -> list[str]:
        """The run folders one array task writes (several for a sweep group)."""
        if self.task_of is None:
            return [self.run_dirs[task]]
        return [d for d, t in zip(self.run_dirs, self.task_of, strict=True) if t == task]

    @property
    def job_dir(self) -> str:
        return f"{self.target.workdir.rstrip('/')}/{JOBS_SUBDIR}/{self.name}"

    def manifest_path(self, task: int) -> str:
        return f"{self.job_dir}/manifests/{task}.yaml"

    def run_paths(self, task: int) -> list[str]:
        return [f"{self.target.workdir.rstrip('/')}/{d}" for d in self.task_run_dirs(task)]


def qpath(path: str) -> str:
    """Quote a far-side path; a leading `~/` stays expandable as "$HOME"/..."""
    check_remote_path(path)
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:]) if path[2:] else '"$HOME"'
    return shlex.quote(path)


def _prologue(job: Job) -> list[str]:
    """Shared by both launchers: cd, env file, forwarded secrets, venv, and `write_task_file NAME TEXT`, which
    replaces a task's status file atomically (the status readers never see half a line)."""
    t = job.target
    lines = [f"cd {qpath(t.workdir)} || exit 2"]
    if t.env_file:
        lines.append(f"if [ -f {qpath(t.env_file)} ]; then set -a; . {qpath(t.env_file)}; set +a; fi")
    lines.append('if [ -f "$JOB_DIR"/secrets.env ]; then set -a; . "$JOB_DIR"/secrets.env; set +a; fi')
    if t.venv:
        lines.append(f'export VIRTUAL_ENV={qpath(t.venv)}; export PATH="$VIRTUAL_ENV/bin:$PATH"')
    else:
        lines.append('export VIRTUAL_ENV="$PWD/.venv"; export PATH="$VIRTUAL_ENV/bin:$PATH"')
    lines.append(
        'write_task_file() { printf "%s\\n" "$2" > "$JOB_DIR/task-$task/.$1.tmp" && mv -f "$JOB_DIR/task-$task/.$1.tmp" "$JOB_DIR/task-$task/$1"; }'
    )
    return lines


def _run_cmd(job: Job) -> str:
    return shlex.join(job.target.run_command)


def launcher_script(job: Job) -> str:
    """RunPod: a bash script started by tmux; runs the tasks in order, records state and exit_code per task.

    The exit status never lies: task-<i>/exit_code is the runner's own exit code, and state says failed
    whenever it is not 0. tmux kill-session (cancel) sends HUP, forwarded to the runner as TERM.
    """
    lines = [
        "#!/usr/bin/env bash",
        f"# qc2c launcher for job {job.name} on target {job.target.name or job.target.host} (rendered; do not edit)",
        "set -u",
        f"JOB_DIR={qpath(job.job_dir)}",
        'exec >>"$JOB_DIR"/job.log 2>&1',
        *_prologue(job),
        "child=",
        'stop() { [ -n "$child" ] && kill -TERM "$child" 2>/dev/null; wait "$child"; rc=$?;',
        '  write_task_file exit_code "$rc"; write_task_file state cancelled; exit "$rc"; }',
        "trap stop HUP TERM INT",
        "worst=0",
        f"for task in $(seq 0 {job.n_tasks - 1}); do",
        '  mkdir -p "$JOB_DIR/task-$task"',
        "  write_task_file state running",
        '  echo "qc2c: task $task start $(date -u +%FT%TZ) on $(hostname)"',
        f'  {_run_cmd(job)} "$JOB_DIR/manifests/$task.yaml" &',
        "  child=$!",
        '  wait "$child"; rc=$?; child=',
        '  write_task_file exit_code "$rc"',
        '  if [ "$rc" -eq 0 ]; then write_task_file state done; else write_task_file state failed; worst=$rc; fi',
        '  echo "qc2c: task $task exit $rc"',
        "done",
        'exit "$worst"',
    ]
    return "\n".join(lines) + "\n"


def tmux_session(job_name: str) -> str:
    """The tmux session of a job: tmux itself renames '.' and ':' in session names to '_' (they separate
    window and pane in a target), so a job 'm2.int4' would run as 'm2_int4' and be looked for in vain."""
    return check_name(job_name, "job name").replace(".", "_").replace(":", "_")


def tmux_target(job_name: str) -> str:
    """`-t` argument naming exactly that session ('=' turns off tmux's prefix and pattern matching, so
    has-session for 'smoke' never answers for 'smoke-2')."""
    return f"={tmux_session(job_name)}"


def tmux_command(job: Job) -> list[str]:
    """argv for the far side: a detached session running the uploaded script (no nested quoting)."""
    return ["tmux", "new-session", "-d", "-s", tmux_session(job.name), f"{job.job_dir}/launch.sh"]


def tmux_alive_command(job: Job) -> str:
    return shlex.join(["tmux", "has-session", "-t", tmux_target(job.name)])


def sbatch_flags(job: Job) -> list[str]:
    s = job.target.slurm
    assert s is not None, "slurm target without slurm settings"
    flags = [
        f"--job-name={job.name}",
        "--requeue",
        "--signal=B:USR1@120",
        "--open-mode=append",
        f"--output={job.job_dir}/slurm-%A_%a.out",
        f"--chdir={job.target.workdir}",
        "--nodes=1",
        "--ntasks=1",
        f"--cpus-per-task={s.cpus}",
        f"--mem={s.mem}",
        f"--time={s.time}",
        f"--array=0-{job.n_tasks - 1}",
    ]
    if s.partition:
        flags.append(f"--partition={s.partition}")
    if s.account:
        flags.append(f"--account={s.account}")
    if s.gpus:
        flags.append(f"--gpus={s.gpus}")
    flags.extend(s.extra)
    return flags


def sbatch_script(job: Job) -> str:
    """Slurm: one job array (one task per manifest). USR1 (sent 120 s before the time limit, or by
    `scancel --batch --signal=USR1`) is forwarded to the runner, which flushes progress and exits 75; the
    script then requeues itself and the rerun resumes the same run folder (run_tag is stable)."""
    if job.target.workdir.startswith("~/"):
        raise ValueError("slurm targets need an absolute workdir (#SBATCH lines are not shell-expanded)")
    lines = ["#!/usr/bin/env bash", f"# qc2c sbatch script for job {job.name} (rendered; do not edit)"]
    lines += [f"#SBATCH {shlex.quote(flag)}" for flag in sbatch_flags(job)]
    lines += [
        "set -u",
        f"JOB_DIR={qpath(job.job_dir)}",
        "task=${SLURM_ARRAY_TASK_ID:-0}",
        'mkdir -p "$JOB_DIR/task-$task"',
        *_prologue(job),
        'rm -f "$JOB_DIR/task-$task/exit_code"  # a requeued attempt starts without the last verdict',
        "write_task_file state running",
        'echo "qc2c: task $task job ${SLURM_JOB_ID} restart ${SLURM_RESTART_COUNT:-0} on $(hostname)"',
        "child=",
        "# Requeue, then wait for the kill that the requeue sends: a script that exits first races that kill, and",
        "# slurmd then refuses the relaunch as an already-killed job. A refused requeue is a recorded failure.",
        "requeue() {",
        '  write_task_file state requeued; echo "qc2c: preempted, requeueing ${SLURM_JOB_ID}"; trap "exit 0" TERM',
        '  if scontrol requeue "$SLURM_JOB_ID"; then for _ in $(seq 120); do sleep 1; done; exit 0; fi',
        '  echo "qc2c: scontrol requeue failed; launch the manifest again to resume"; write_task_file exit_code 75',
        "  write_task_file state failed; exit 75; }",
        "finish() {",
        '  if [ "$1" -eq 75 ]; then requeue; fi',
        '  write_task_file exit_code "$1"',
        '  if [ "$1" -eq 0 ]; then write_task_file state done; else write_task_file state failed; fi',
        '  echo "qc2c: task $task exit $1"; exit "$1"; }',
        'on_usr1() { echo "qc2c: USR1, asking the runner to flush"; kill -USR1 "$child" 2>/dev/null; wait "$child"; finish $?; }',
        'on_term() { kill -TERM "$child" 2>/dev/null; wait "$child"; rc=$?; write_task_file exit_code "$rc";',
        '  write_task_file state cancelled; exit "$rc"; }',
        "trap on_usr1 USR1",
        "trap on_term TERM",
        f'{_run_cmd(job)} "$JOB_DIR/manifests/$task.yaml" &',
        "child=$!",
        'wait "$child"',
        "finish $?",
    ]
    return "\n".join(lines) + "\n"


def sbatch_command(job: Job) -> str:
    return shlex.join(["sbatch", "--parsable", f"{job.job_dir}/job.sbatch"])


def probe_command(job: Job) -> str:
    """One far-side command that prints every task's state, exit_code and its runs' status.json between
    marker lines (parsed by status.parse_probe)."""
    parts = []
    for task in range(job.n_tasks):
        base = f"{qpath(job.job_dir)}/task-{task}"
        runs = "; ".join(
            f"echo {PROBE_MARK} {task} status_json; cat {qpath(path)}/status.json 2>/dev/null; echo"
            for path in job.run_paths(task)
        )
        parts.append(
            f"echo {PROBE_MARK} {task} state; cat {base}/state 2>/dev/null; "
            f"echo {PROBE_MARK} {task} exit_code; cat {base}/exit_code 2>/dev/null; {runs}"
        )
    return "; ".join(parts)


def squeue_command(job_id: str) -> str:
    """Every state (`-t all`): a task that just ended stays witnessed, as COMPLETED/FAILED, for MinJobAge."""
    return shlex.join(["squeue", "-h", "-r", "-t", "all", "-j", check_slurm_id(job_id), "-o", "%i|%T"])


def sacct_command(job_id: str) -> str:
    return shlex.join(["sacct", "-n", "-X", "-P", "-j", check_slurm_id(job_id), "-o", "JobID,State,ExitCode"])


def check_slurm_id(job_id: str) -> str:
    if not (job_id.isascii() and job_id.isdigit()):
        raise ValueError(f"slurm job id {job_id!r} is not a number")
    return job_id


def logs_command(job: Job, *, follow: bool, n_lines: int = 200) -> str:
    pattern = "job.log" if job.target.kind == "runpod" else "slurm-*.out"
    tail = ["tail", "-F"] if follow else ["tail", "-n", str(int(n_lines))]
    return f"cd {qpath(job.job_dir)} && {shlex.join(tail)} {pattern}"


def cancel_command(job: Job, slurm_job_id: str | None) -> str:
    if job.target.kind == "runpod":
        return shlex.join(["tmux", "kill-session", "-t", tmux_target(job.name)])
    assert slurm_job_id is not None
    return shlex.join(["scancel", check_slurm_id(slurm_job_id)])


def sftp_path(path: str) -> str:
    """SFTP does not expand `~`: its relative paths already start at the login's home."""
    check_remote_path(path)
    return path[2:] if path.startswith("~/") else path


def with_env(target: Target, command: str) -> str:
    """Prefix a far-side command with the target's env file (e.g. SLURM_CONF, module loads)."""
    if not target.env_file:
        return command
    env = qpath(target.env_file)
    return f"if [ -f {env} ]; then set -a; . {env}; set +a; fi; {command}"


def ssh_argv(target: Target) -> list[str]:
    """ssh as rsync's remote shell, with the same host-key policy as the Fabric connection."""
    argv = ["ssh"]
    if target.ssh_config:
        argv += ["-F", os.path.expanduser(target.ssh_config)]
    else:
        argv += ["-p", str(target.port), "-o", "BatchMode=yes"]
        if target.identity_file:
            argv += ["-i", os.path.expanduser(target.identity_file), "-o", "IdentitiesOnly=yes"]
    if target.known_hosts_file:
        argv += ["-o", f"UserKnownHostsFile={os.path.expanduser(target.known_hosts_file)}"]
    checking = {"strict": "yes", "accept-new": "accept-new", "insecure-auto-add": "no"}[target.known_hosts]
    return [*argv, "-o", f"StrictHostKeyChecking={checking}"]


def rsync_remote(target: Target, path: str) -> str:
    """user@host:path for rsync (args are protected by rsync >= 3.2.4; `~/x` becomes home-relative `x`)."""
    check_remote_path(path)
    far = path[2:] if path.startswith("~/") else path
    who = f"{target.user}@" if target.user else ""
    return f"{who}{target.host}:{far}"


def rsync_sync_argv(target: Target, local_root: str, *, include_git: bool) -> list[str]:
    """Repository → workdir. Git-ignored files (rsync reads each .gitignore), runs/ and .venv stay home;
    --delete only touches files rsync transfers, so the far side's runs/ and .venv survive."""
    argv = ["rsync", "-az", "--delete", "-e", shlex.join(ssh_argv(target))]
    argv += ["--exclude=/runs/", "--exclude=/.venv/", "--filter=:- .gitignore"]
    if not include_git:
        argv.append("--exclude=/.git/")
    return [*argv, f"{local_root.rstrip('/')}/", rsync_remote(target, target.workdir.rstrip("/") + "/")]


def rsync_pull_argv(target: Target, run_dir: str, local_dir: str, *, dry_run: bool) -> list[str]:
    """Far run folder → local run folder. Never overwrites: --ignore-existing; the dry run (--checksum,
    itemized) lists files that exist locally and differ, reported as conflicts."""
    argv = ["rsync", "-a", "-e", shlex.join(ssh_argv(target))]
    argv += ["--dry-run", "--checksum", "--out-format=%i %n"] if dry_run else ["--ignore-existing"]
    src = rsync_remote(target, f"{target.workdir.rstrip('/')}/{run_dir}/")
    return [*argv, src, f"{local_dir.rstrip('/')}/"]


def rsync_job_logs_argv(target: Target, job_dir: str, local_dir: str) -> list[str]:
    """The launcher's own logs (job.log, slurm-*.out) → local copy, so they outlive the machine. Only *.log
    and *.out travel: secrets.env and the scripts stay on the far side."""
    argv = ["rsync", "-a", "-e", shlex.join(ssh_argv(target)), "--include=*.log", "--include=*.out", "--exclude=*"]
    return [*argv, rsync_remote(target, f"{job_dir.rstrip('/')}/"), f"{local_dir.rstrip('/')}/"]
