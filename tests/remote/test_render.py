"""Renderers against recorded files, hostile names, shell syntax. Run: .venv/bin/python -m pytest tests/remote/test_render.py -q"""

from __future__ import annotations

import shlex
import subprocess

import pytest
from pydantic import ValidationError

from remote import render
from remote.targets import Target, UnsafeName, check_name

RUNPOD = Target(
    name="pod",
    kind="runpod",
    host="127.0.0.1",
    port=2222,
    user="root",
    identity_file="/keys/id_ed25519",
    known_hosts_file="/keys/known_hosts",
    workdir="/workspace/qc2c",
    env_file="/workspace/qc2c.env",
    forward_env=["HF_TOKEN"],
)
SLURM = Target(
    name="cluster",
    kind="slurm",
    host="login1",
    ssh_config="/keys/ssh_config",
    workdir="/scratch/me/qc2c",
    venv="/scratch/me/venv",
    slurm={
        "partition": "gpu",
        "account": "proj",
        "gpus": 1,
        "cpus": 8,
        "mem": "64G",
        "time": "12:00:00",
        "extra": ["--constraint=a100"],
    },
)


def job(target: Target, n: int = 1, name: str = "smoke-20260101-000000-000000") -> render.Job:
    return render.Job(name=name, target=target, run_dirs=[f"runs/smoke/smoke{i}-0123456789" for i in range(n)])


def test_launcher_script_matches_record(record):
    record("launcher_runpod", render.launcher_script(job(RUNPOD)))


def test_tmux_command_matches_record(record):
    record("tmux_runpod", shlex.join(render.tmux_command(job(RUNPOD))) + "\n")


def test_sbatch_script_matches_record(record):
    record("sbatch_single", render.sbatch_script(job(SLURM)))


def test_sbatch_sweep_is_one_array_matching_record(record):
    text = render.sbatch_script(job(SLURM, n=3))
    assert "#SBATCH --array=0-2" in text.splitlines()
    record("sbatch_sweep", text)


def test_probe_and_scheduler_commands_match_record(record):
    j = job(SLURM, n=2)
    lines = [render.probe_command(j), render.squeue_command("42"), render.sacct_command("42")]
    lines += [render.logs_command(j, follow=True), render.cancel_command(j, "42")]
    record("commands_slurm", "\n".join(lines) + "\n")


def test_rsync_argv_matches_record(record):
    lines = [
        shlex.join(render.rsync_sync_argv(RUNPOD, "/home/me/qc2c", include_git=False)),
        shlex.join(render.rsync_pull_argv(RUNPOD, "runs/smoke/smoke-0123456789", "/home/me/qc2c/runs/x", dry_run=True)),
        shlex.join(
            render.rsync_pull_argv(RUNPOD, "runs/smoke/smoke-0123456789", "/home/me/qc2c/runs/x", dry_run=False)
        ),
        shlex.join(render.ssh_argv(SLURM)),
        shlex.join(render.rsync_job_logs_argv(RUNPOD, job(RUNPOD).job_dir, "/home/me/qc2c/runs/remote/pod/j")),
    ]
    record("rsync_runpod", "\n".join(lines) + "\n")


@pytest.mark.parametrize("script", ["launcher", "sbatch"])
def test_rendered_scripts_are_valid_bash(script, tmp_path):
    text = render.launcher_script(job(RUNPOD, 2)) if script == "launcher" else render.sbatch_script(job(SLURM, 2))
    path = tmp_path / "s.sh"
    path.write_text(text)
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "name",
    ["x; rm -rf /", "$(reboot)", "a b", "-oProxyCommand=evil", "../escape", "UPPER", "", "a\nb", "`id`", "a'b"],
)
def test_hostile_job_names_are_refused(name):
    with pytest.raises(UnsafeName):
        check_name(name)
    with pytest.raises(ValidationError):
        job(RUNPOD, name=name)


@pytest.mark.parametrize(
    "run_dir", ["runs/smoke/$(id)", "runs/../../etc", "/etc/passwd", "runs/a b/c", "results/x/y", "runs/x/;ls"]
)
def test_hostile_run_dirs_are_refused(run_dir):
    with pytest.raises(ValidationError):
        render.Job(name="ok", target=RUNPOD, run_dirs=[run_dir])


@pytest.mark.parametrize(
    "field,value",
    [
        ("workdir", "/tmp/$(id)"),
        ("workdir", "relative/dir"),
        ("workdir", "/a/../b"),
        ("host", "-oProxyCommand=x"),
        ("host", "h;id"),
        ("venv", "/v env"),
        ("forward_env", ["HF TOKEN"]),
        ("run_command", ["python", "-c", "x;y"]),
        ("user", "root;id"),
    ],
)
def test_hostile_target_fields_are_refused(field, value):
    data = RUNPOD.model_dump() | {field: value}
    with pytest.raises(ValidationError):
        Target.model_validate(data)


def test_hostile_sbatch_extra_option_is_refused():
    with pytest.raises(ValidationError, match="sbatch option"):
        Target.model_validate(SLURM.model_dump() | {"slurm": {"extra": ["--wrap=rm -rf /"]}})


def test_home_relative_paths_stay_expandable_and_quoted():
    assert render.qpath("~/qc2c") == '"$HOME"/qc2c'
    assert render.qpath("/x/y=z") == "/x/y=z"
    assert render.qpath("/x/a,b") == "/x/a,b"
    # rsync gets a home-relative path (no shell on its side)
    assert render.rsync_remote(RUNPOD, "~/qc2c/") == "root@127.0.0.1:qc2c/"


def test_slurm_refuses_home_relative_workdir():
    target = SLURM.model_copy(update={"workdir": "~/qc2c"})
    with pytest.raises(ValueError, match="absolute workdir"):
        render.sbatch_script(job(target))


def test_secrets_never_appear_in_rendered_text():
    """Only the variable's name is known to renderers; values are written by tasks.write_secret_file."""
    texts = [render.launcher_script(job(RUNPOD)), render.sbatch_script(job(SLURM)), *render.tmux_command(job(RUNPOD))]
    assert all("HF_TOKEN=" not in t for t in texts)
    assert "secrets.env" in texts[0] and "secrets.env" in texts[1]


def test_with_env_sources_env_file_before_the_command():
    assert render.with_env(RUNPOD, "squeue") == (
        "if [ -f /workspace/qc2c.env ]; then set -a; . /workspace/qc2c.env; set +a; fi; squeue"
    )
    assert render.with_env(SLURM, "squeue") == "squeue"


def test_slurm_job_ids_must_be_numbers():
    with pytest.raises(ValueError):
        render.squeue_command("1; scancel -u root")
