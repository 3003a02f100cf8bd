"""Remote names: every validator matches the whole value (a trailing newline is refused), and tmux sessions
are named so that a real tmux finds them again. Run: .venv/bin/python -m pytest tests/remote/test_remote_names.py -q
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import uuid

import pytest
from pydantic import ValidationError

from remote import render
from remote.targets import Slurm, Target, UnsafeName, check_name, check_remote_path

POD = dict(name="pod", kind="runpod", host="127.0.0.1", user="root", workdir="/workspace/qc2c")


@pytest.mark.parametrize("value", ["smoke\n", "smoke\r\n", "a\nb", "smoke\n\n"])
def test_check_name_refuses_a_trailing_newline(value: str) -> None:
    with pytest.raises(UnsafeName):
        check_name(value)
    with pytest.raises(UnsafeName):
        check_remote_path(f"/workspace/{value}")


@pytest.mark.parametrize(
    "field, value",
    [
        ("host", "login1\n"),
        ("user", "root\n"),
        ("workdir", "/workspace/q\n"),
        ("forward_env", ["HF_TOKEN\n"]),
        ("run_command", ["python\n", "-m", "runner"]),
        ("venv", "/opt/venv\n"),
    ],
)
def test_target_fields_refuse_a_trailing_newline(field: str, value) -> None:
    with pytest.raises(ValidationError):
        Target(**{**POD, field: value})


@pytest.mark.parametrize("field, value", [("extra", ["--constraint=a100\n"]), ("mem", "4G\n"), ("partition", "gpu\n")])
def test_slurm_fields_refuse_a_trailing_newline(field: str, value) -> None:
    with pytest.raises(ValidationError):
        Slurm(**{field: value})


def test_a_job_id_of_non_ascii_digits_is_refused() -> None:
    with pytest.raises(ValueError):
        render.check_slurm_id("\u0661\u0662")  # Arabic-Indic 12: str.isdigit() says yes
    assert render.check_slurm_id("4242") == "4242"


def test_session_names_avoid_what_tmux_renames() -> None:
    assert render.tmux_session("m2.int4-20260101") == "m2_int4-20260101"
    assert render.tmux_target("smoke") == "=smoke"  # exact: never a prefix match on 'smoke-2'


def _tmux(socket: str, command: list[str] | str) -> subprocess.CompletedProcess:
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    assert argv[0] == "tmux"
    return subprocess.run(["tmux", "-L", socket, *argv[1:]], capture_output=True, text=True, timeout=30)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed (.ci/system-packages installs it)")
@pytest.mark.parametrize("name", ["m2.int4-20260101-000000-000000", "smoke-20260101-000000-000000"])
def test_a_real_tmux_finds_and_cancels_the_session_it_was_given(name: str) -> None:
    socket = f"qc2c-test-{uuid.uuid4().hex[:8]}"  # a private tmux server: no user session is touched
    target = Target(**POD)
    job = render.Job(name=name, target=target, run_dirs=["runs/smoke/smoke-0123456789"])
    prefix = render.Job(name=name.split("-")[0], target=target, run_dirs=job.run_dirs)
    start = render.tmux_command(job)[:-1] + ["sleep 60"]  # the launcher script replaced by a sleeper
    try:
        assert _tmux(socket, start).returncode == 0
        assert _tmux(socket, render.tmux_alive_command(job)).returncode == 0  # found under the name it got
        assert _tmux(socket, render.tmux_alive_command(prefix)).returncode != 0  # a prefix is another job
        assert _tmux(socket, render.cancel_command(job, None)).returncode == 0
        assert _tmux(socket, render.tmux_alive_command(job)).returncode != 0
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True, timeout=30)
