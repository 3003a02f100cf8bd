"""Thin tasks: connect, call a pure renderer (remote.render), run it, report. One function per verb.

Each returns an exit code (runner.exitcodes) and prints one line per finding. Trees move with rsync over
ssh (Fabric's put/get are single-file); single files and secrets move over SFTP.
"""

from __future__ import annotations

import io
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from fabric import Connection

from remote import ledger, render
from remote.connect import connect
from remote.planning import PlannedTask, plan_tasks
from remote.status import (
    UNREACHABLE,
    JobStatus,
    TaskStatus,
    decide,
    format_status,
    parse_probe,
    parse_sacct,
    parse_squeue,
    squeue_lost_the_job,
)
from remote.targets import Target, check_name
from runner.exitcodes import EXIT_BAD_INPUT, EXIT_OK, EXIT_RUN_FAILED
from runner.fsio import atomic_write

Planner = Callable[[Path, bool], list[PlannedTask]]


def _run(conn: Connection, target: Target, command: str, **kwargs):
    """Run a rendered command on the far side after sourcing the target's env file; never echoed."""
    kwargs.setdefault("hide", True)
    return conn.run(render.with_env(target, command), **kwargs)


def sync(target: Target, *, repo: Path, include_git: bool = False) -> int:
    conn = connect(target)
    conn.run(f"mkdir -p {render.qpath(target.workdir)}", hide=True)
    argv = render.rsync_sync_argv(target, str(repo), include_git=include_git)
    return subprocess.run(argv, check=False).returncode


def setup(target: Target) -> int:
    """Check the tools the kind needs, then make (or verify) the far venv."""
    conn = connect(target)
    tools = ["rsync", "tmux"] if target.kind == "runpod" else ["rsync", "sbatch", "squeue", "scontrol"]
    missing = [t for t in tools if not _run(conn, target, f"command -v {shlex.quote(t)}", warn=True).ok]
    if missing:
        print(f"{target.name}: missing on the far side: {', '.join(missing)}", file=sys.stderr)
        return EXIT_RUN_FAILED
    if target.venv:
        check = f"cd {render.qpath(target.workdir)} && {render.qpath(target.venv)}/bin/python -c 'import qc2c, runner'"
        if not conn.run(check, warn=True, hide=True).ok:
            print(f"{target.name}: venv {target.venv} cannot import qc2c/runner", file=sys.stderr)
            return EXIT_RUN_FAILED
        print(f"{target.name}: reusing venv {target.venv}")
        return EXIT_OK
    return 0 if conn.run(f"cd {render.qpath(target.workdir)} && make setup", warn=True).ok else EXIT_RUN_FAILED


def _job_name(manifest: Path) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
    return check_name(f"{check_name(manifest.stem, 'manifest file name')[:60]}-{stamp}", "job name")


def write_secret_file(conn: Connection, path: str, names: list[str], environ: dict[str, str]) -> list[str]:
    """`export NAME=value` lines into a file that is mode 600 before a byte is written; returns the names
    forwarded (values are never printed)."""
    present = [n for n in names if n in environ]
    body = "".join(f"export {n}={shlex.quote(environ[n])}\n" for n in present)
    sftp = conn.sftp()
    with sftp.open(path, "w") as handle:
        handle.chmod(0o600)
        handle.write(body.encode("utf-8"))
    return present


def launch(
    target: Target,
    manifest: Path,
    *,
    is_sweep: bool = False,
    ledger_path: Path = ledger.DEFAULT_LEDGER,
    planner: Planner = plan_tasks,
    environ: dict[str, str] | None = None,
) -> ledger.LedgerEntry:
    name = _job_name(manifest)  # a hostile file name is refused before anything runs
    planned = planner(manifest, is_sweep)
    run_dirs = [d for p in planned for d in p.run_dirs]
    grouped = any(len(p.run_dirs) > 1 for p in planned)
    task_of = [t for t, p in enumerate(planned) for _ in p.run_dirs] if grouped else None
    job = render.Job(name=name, target=target, run_dirs=run_dirs, is_sweep=is_sweep, task_of=task_of)
    conn = connect(target)
    conn.run(f"umask 077 && mkdir -p {render.qpath(job.job_dir)}/manifests", hide=True)
    for i, task in enumerate(planned):
        conn.put(io.BytesIO(task.manifest_text.encode("utf-8")), render.sftp_path(job.manifest_path(i)))
    environ = dict(os.environ) if environ is None else environ
    forwarded = write_secret_file(conn, render.sftp_path(f"{job.job_dir}/secrets.env"), target.forward_env, environ)
    for name in sorted(set(target.forward_env) - set(forwarded)):
        print(f"{target.name}: {name} is not set here; not forwarded", file=sys.stderr)
    if target.kind == "runpod":
        conn.put(io.BytesIO(render.launcher_script(job).encode("utf-8")), render.sftp_path(f"{job.job_dir}/launch.sh"))
        conn.run(f"chmod 700 {render.qpath(job.job_dir)}/launch.sh", hide=True)
        _run(conn, target, shlex.join(render.tmux_command(job)))
        handle = job.name
    else:
        conn.put(io.BytesIO(render.sbatch_script(job).encode("utf-8")), render.sftp_path(f"{job.job_dir}/job.sbatch"))
        out = _run(conn, target, render.sbatch_command(job)).stdout.strip()
        handle = render.check_slurm_id(out.split(";")[0])
    entry = ledger.LedgerEntry(
        name=job.name,
        target=target.name,
        kind=target.kind,
        manifest=str(manifest),
        run_dirs=job.run_dirs,
        job_dir=job.job_dir,
        handle=handle,
        is_sweep=is_sweep,
        task_of=job.task_of,
    )
    ledger.add_entry(entry, ledger_path)
    return entry


def _job_of(target: Target, entry: ledger.LedgerEntry) -> render.Job:
    return render.Job(
        name=entry.name, target=target, run_dirs=entry.run_dirs, is_sweep=entry.is_sweep, task_of=entry.task_of
    )


def job_status(conn: Connection, target: Target, entry: ledger.LedgerEntry) -> JobStatus:
    """Ask the scheduler first, the files second: a job that the scheduler has let go of has already
    written its final files, so the pair read in this order is never "gone and no exit code" by a race."""
    job = _job_of(target, entry)
    scheduler: dict[int, str] = {}
    if target.kind == "runpod":
        alive = _run(conn, target, render.tmux_alive_command(job), warn=True).ok
        scheduler = dict.fromkeys(range(job.n_tasks), "ALIVE" if alive else "GONE")
    else:
        squeue = _run(conn, target, render.squeue_command(entry.handle), warn=True)
        if not squeue.ok and not squeue_lost_the_job(squeue.stderr):
            scheduler = dict.fromkeys(range(job.n_tasks), UNREACHABLE)
            print(f"{target.name}: squeue failed: {squeue.stderr.strip()[:200]}", file=sys.stderr)
        else:
            scheduler = parse_squeue(squeue.stdout)
        missing = [t for t in range(job.n_tasks) if t not in scheduler]
        if missing:
            sacct = _run(conn, target, render.sacct_command(entry.handle), warn=True)
            from_sacct = parse_sacct(sacct.stdout) if sacct.ok else {}
            scheduler.update({t: from_sacct[t] for t in missing if t in from_sacct})
    files = parse_probe(_run(conn, target, render.probe_command(job), warn=True).stdout, job.n_tasks)
    tasks = [decide(t, files[t], scheduler.get(t), kind=target.kind) for t in range(job.n_tasks)]
    return JobStatus(entry.name, tasks)


def _entries_or_report(target: Target, job: str | None, ledger_path: Path) -> list[ledger.LedgerEntry]:
    """The ledger's jobs on `target` (one, with `job`); empty after saying so on stderr."""
    entries = ledger.select(ledger.load_entries(ledger_path), target.name, job)
    if not entries:
        print(f"{target.name}: no jobs in {ledger_path}", file=sys.stderr)
    return entries


def status(target: Target, *, job: str | None, ledger_path: Path, as_json: bool = False) -> int:
    entries = _entries_or_report(target, job, ledger_path)
    if not entries:
        return EXIT_BAD_INPUT
    conn = connect(target)
    results = [job_status(conn, target, e) for e in entries]
    if as_json:
        import json

        rows = [{"name": r.name, "state": r.state, "tasks": [t.as_dict() for t in r.tasks]} for r in results]
        print(json.dumps(rows, indent=2))
    else:
        for result in results:
            print("\n".join(format_status(result)))
    return EXIT_OK


def logs(target: Target, *, job: str | None, ledger_path: Path, follow: bool = False) -> int:
    entries = _entries_or_report(target, job, ledger_path)
    if not entries:
        return EXIT_BAD_INPUT
    conn = connect(target)
    result = _run(conn, target, render.logs_command(_job_of(target, entries[-1]), follow=follow), warn=True, hide=False)
    return EXIT_OK if result.ok else EXIT_RUN_FAILED


def cancel(target: Target, *, job: str | None, ledger_path: Path) -> int:
    entries = _entries_or_report(target, job, ledger_path)
    if not entries:
        return EXIT_BAD_INPUT
    conn = connect(target)
    entry = entries[-1]
    command = render.cancel_command(_job_of(target, entry), entry.handle if target.kind == "slurm" else None)
    return EXIT_OK if _run(conn, target, command, warn=True).ok else EXIT_RUN_FAILED


def conflicts_from_dry_run(text: str) -> list[str]:
    """Itemized dry-run lines of files that exist locally and differ (`>f` not followed by `+++`)."""
    out = []
    for line in text.splitlines():
        flags, _, name = line.partition(" ")
        if flags.startswith(">f") and not flags[2:].startswith("+++"):
            out.append(name)
    return out


def snapshot_registry(conn: Connection, target: Target, repo: Path) -> Path | None:
    """Copy the far side's runs/registry.json to runs/remote/<target>/registry.json (what merge trusts)."""
    from remote.merge import registry_snapshot_dir

    buffer = io.BytesIO()
    try:
        conn.get(render.sftp_path(f"{target.workdir.rstrip('/')}/runs/registry.json"), buffer)
    except FileNotFoundError:
        return None
    path = registry_snapshot_dir(repo, target) / "registry.json"
    atomic_write(path, buffer.getvalue())
    return path


def _pull_run(
    target: Target,
    entry: ledger.LedgerEntry,
    task: TaskStatus,
    run_dir: str,
    repo: Path,
    ledger_path: Path,
    *,
    partial: bool,
) -> int:
    """rsync one run folder of a task back (see `pull`); returns an exit code."""
    if task.state != "done" and not partial:
        print(f"{entry.name}[{task.task}] {run_dir} {task.state}: not pulled (use --partial for in-flight runs)")
        return EXIT_OK
    local = repo / run_dir
    local.mkdir(parents=True, exist_ok=True)
    dry = subprocess.run(
        render.rsync_pull_argv(target, run_dir, str(local), dry_run=True), capture_output=True, text=True
    )
    if dry.returncode != 0:
        print(f"{entry.name}[{task.task}]: rsync failed: {dry.stderr.strip()}", file=sys.stderr)
        return EXIT_RUN_FAILED
    rc = EXIT_OK
    for name in conflicts_from_dry_run(dry.stdout):
        print(f"{run_dir}/{name}: differs locally; kept the local file (not overwritten)", file=sys.stderr)
        rc = EXIT_RUN_FAILED
    if subprocess.run(render.rsync_pull_argv(target, run_dir, str(local), dry_run=False), check=False).returncode:
        return EXIT_RUN_FAILED
    if task.state == "done":
        ledger.mark_pulled(entry.name, entry.target, run_dir, ledger_path)
    print(f"{entry.name}[{task.task}] pulled {run_dir} ({task.state})")
    return rc


def pull(target: Target, *, job: str | None, ledger_path: Path, repo: Path, partial: bool = False) -> int:
    """rsync run folders back; complete ones only unless `partial`. Local files that differ are kept and
    reported (exit 1), never overwritten."""
    from remote.merge import registry_snapshot_dir

    entries = _entries_or_report(target, job, ledger_path)
    if not entries:
        return EXIT_BAD_INPUT
    conn = connect(target)
    rc = EXIT_OK
    snapshot_registry(conn, target, repo)
    for entry in entries:
        result = job_status(conn, target, entry)
        logs_dir = registry_snapshot_dir(repo, target) / entry.name
        logs_dir.mkdir(parents=True, exist_ok=True)
        if subprocess.run(render.rsync_job_logs_argv(target, entry.job_dir, str(logs_dir)), check=False).returncode:
            print(f"{entry.name}: could not copy the job logs", file=sys.stderr)
            rc = EXIT_RUN_FAILED
        job_of = _job_of(target, entry)
        for task in result.tasks:
            for run_dir in job_of.task_run_dirs(task.task):
                rc = max(rc, _pull_run(target, entry, task, run_dir, repo, ledger_path, partial=partial))
    return rc
