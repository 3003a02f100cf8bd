"""RunPod path against a real sshd on 127.0.0.1: sync → launch (tmux) → status → pull → merge.

Run: .venv/bin/python -m pytest tests/integration/test_remote_runpod.py -q   (root; openssh-server rsync tmux)
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from pathlib import Path

import paramiko
import pytest
from pydantic import ValidationError
from ruamel.yaml import YAML

from remote import ledger, tasks
from remote.__main__ import main
from remote.connect import connect
from remote.planning import PlannedTask
from remote.targets import Target

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from infra import wait_until  # noqa: E402
from infra.sshd import SshDaemon, unavailable  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".venv"
STANDIN = ["python", "tests/remote/standin_runner.py"]
SECRET = "hf_test_secret_value_9f8e7d"
pytestmark = [pytest.mark.sshd, pytest.mark.skipif(bool(unavailable()), reason=f"sshd tier: {unavailable()}")]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    with SshDaemon(tmp_path_factory.mktemp("sshd")) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def far(tmp_path_factory, sshd) -> dict:
    """A far workdir synced once from this checkout, and a local side (ledger, pulled runs) in tmp."""
    root = tmp_path_factory.mktemp("far")
    env_file = root / "qc2c.env"
    env_file.write_text("export QC2C_FAR_MARKER=from-env-file\n")
    fields = sshd.target_fields() | {
        "kind": "runpod",
        "workdir": str(root / "qc2c"),
        "env_file": str(env_file),
        "venv": str(VENV),
        "forward_env": ["HF_TOKEN"],
        "run_command": STANDIN,
    }
    local = tmp_path_factory.mktemp("local")
    targets = local / "targets.yaml"
    real = {k: v for k, v in fields.items() if k != "run_command"}  # the real runner: python -m runner run
    YAML().dump({"targets": {"pod": fields, "real": real}}, targets.open("w"))
    common = ["--targets", str(targets), "--ledger", str(local / "runs" / "remote_jobs.json")]
    assert main([*common, "--repo", str(REPO), "sync", "pod"]) == 0
    return {"target": Target.model_validate({**fields, "name": "pod"}), "local": local, "common": common, "root": root}


def standin_planner(spec: dict):
    def plan(manifest: Path, is_sweep: bool) -> list[PlannedTask]:
        sys.path.insert(0, str(REPO / "tests" / "remote"))
        from standin_runner import run_dir_of

        text = manifest.read_text()
        return [PlannedTask(text, run_dir_of(YAML(typ="safe").load(text))[0].as_posix())]

    return plan


def launch_standin(far: dict, tmp_path: Path, name: str, **spec) -> ledger.LedgerEntry:
    manifest = tmp_path / "standin.yaml"
    manifest.write_text(json.dumps({"name": name, "milestone": "remote_test", "standin": spec}))
    return tasks.launch(
        far["target"],
        manifest,
        ledger_path=far["local"] / "runs" / "remote_jobs.json",
        planner=standin_planner(spec),
        environ={"HF_TOKEN": SECRET},
    )


def wait_state(far: dict, entry: ledger.LedgerEntry, states: set[str], timeout_s: float = 30):
    conn = connect(far["target"])
    seen = {}

    def reached() -> bool:
        seen["status"] = tasks.job_status(conn, far["target"], entry)
        return seen["status"].state in states

    wait_until(reached, timeout_s, f"job {entry.name} to reach {states}", 0.2)
    return seen["status"]


def test_sync_excludes_ignored_and_is_fast_when_nothing_changed(far):
    workdir = Path(far["target"].workdir)
    assert (workdir / "remote" / "render.py").is_file() and (workdir / "Makefile").is_file()
    assert not (workdir / ".venv").exists() and not (workdir / ".git").exists()
    assert not any(workdir.rglob("__pycache__")), "git-ignored files are not sent"
    t0 = time.monotonic()
    assert main([*far["common"], "--repo", str(REPO), "sync", "pod"]) == 0
    assert time.monotonic() - t0 < 5.0


def test_launch_status_pull_roundtrip_keeps_secrets_out_of_sight(far, tmp_path, capsys):
    entry = launch_standin(far, tmp_path, "roundtrip", n_samples=4, sleep_s=0.3)
    ps = subprocess.run(["ps", "axww", "-o", "args"], capture_output=True, text=True).stdout
    assert SECRET not in ps
    status = wait_state(far, entry, {"done", "failed"})
    assert status.state == "done", status
    assert (status.tasks[0].n_done, status.tasks[0].n_total) == (4, 4)
    secrets = Path(entry.job_dir) / "secrets.env"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600 and SECRET in secrets.read_text()
    log = (Path(entry.job_dir) / "job.log").read_text()
    assert "task 0 exit 0" in log and SECRET not in log
    ledger_text = (far["local"] / "runs" / "remote_jobs.json").read_text()
    assert SECRET not in ledger_text and entry.name in ledger_text

    assert main([*far["common"], "status", "pod", "--job", entry.name]) == 0
    assert f"{entry.name}[0] done" in capsys.readouterr().out
    assert main([*far["common"], "--repo", str(far["local"]), "pull", "pod", "--job", entry.name]) == 0
    pulled = far["local"] / entry.run_dirs[0]
    assert json.loads((pulled / "status.json").read_text())["state"] == "complete"
    assert len((pulled / "progress" / "mini.jsonl").read_text().splitlines()) == 4
    assert ledger.load_entries(far["local"] / "runs" / "remote_jobs.json")[-1].pulled == entry.run_dirs
    logs = far["local"] / "runs" / "remote" / "pod" / entry.name
    assert "task 0 exit 0" in (logs / "job.log").read_text() and not (logs / "secrets.env").exists()


def test_failing_job_reports_failed(far, tmp_path):
    """The runner writes status.json "failed" a moment before it exits and the launcher records its exit code:
    a status taken in between already says failed (from status.json), and the exit code follows. The test
    asserted the exit code at the first failed status, which lost that race now and then."""
    entry = launch_standin(far, tmp_path, "failing", n_samples=4, sleep_s=0.05, fail_at=1)
    status = wait_state(far, entry, {"done", "failed"})
    assert status.state == "failed"
    assert status.tasks[0].reason in ("runner status.json says failed", "runner exited 1")
    conn = connect(far["target"])
    final: list = []

    def exit_code_recorded() -> bool:
        final[:] = [tasks.job_status(conn, far["target"], entry)]
        assert final[0].state == "failed", final[0]  # never anything but failed once it said so
        return final[0].tasks[0].reason == "runner exited 1"

    wait_until(exit_code_recorded, 30, "the launcher to record exit code 1", 0.2)


def test_pull_never_clobbers_local_files_that_differ(far, tmp_path, capsys):
    entry = launch_standin(far, tmp_path, "clobber", n_samples=2, sleep_s=0.0)
    wait_state(far, entry, {"done"})
    local_status = far["local"] / entry.run_dirs[0] / "status.json"
    local_status.parent.mkdir(parents=True)
    local_status.write_text("local edit\n")
    capsys.readouterr()
    assert main([*far["common"], "--repo", str(far["local"]), "pull", "pod", "--job", entry.name]) == 1
    assert local_status.read_text() == "local edit\n"
    assert "status.json: differs locally; kept the local file" in capsys.readouterr().err
    assert (local_status.parent / "results" / "mini.json").is_file(), "files that do not clash still arrive"


def test_partial_pull_then_cancel_reports_failed(far, tmp_path, capsys):
    entry = launch_standin(far, tmp_path, "cancelled", n_samples=200, sleep_s=0.1)
    wait_state(far, entry, {"running"})
    wait_until(lambda: (Path(far["target"].workdir) / entry.run_dirs[0] / "progress").is_dir(), 20, "progress")
    local_run = far["local"] / entry.run_dirs[0]
    assert main([*far["common"], "--repo", str(far["local"]), "pull", "pod", "--job", entry.name]) == 0
    assert "running: not pulled (use --partial" in capsys.readouterr().out and not local_run.exists()
    assert main([*far["common"], "--repo", str(far["local"]), "pull", "pod", "--job", entry.name, "--partial"]) == 0
    assert json.loads((local_run / "status.json").read_text())["state"] == "running"
    assert (
        ledger.select(ledger.load_entries(far["local"] / "runs" / "remote_jobs.json"), "pod", entry.name)[0].pulled
        == []
    )
    assert main([*far["common"], "logs", "pod", "--job", entry.name]) == 0
    assert "qc2c: task 0 start" in capsys.readouterr().out
    assert main([*far["common"], "cancel", "pod", "--job", entry.name]) == 0
    status = wait_state(far, entry, {"failed", "done"})
    assert status.state == "failed" and status.tasks[0].reason == "cancelled (runner exited 75)"


def test_setup_checks_tools_and_venv(far, capsys):
    assert main([*far["common"], "setup", "pod"]) == 0
    assert "reusing venv" in capsys.readouterr().out
    targets = Path(far["common"][1])
    text = targets.read_text()
    targets.write_text(text.replace(str(VENV), "/nonexistent/venv"))
    try:
        assert main([*far["common"], "setup", "pod"]) == 1
        assert "cannot import qc2c/runner" in capsys.readouterr().err
    finally:
        targets.write_text(text)


def test_hostile_manifest_name_refused_before_connecting(far, tmp_path, capsys):
    hostile = tmp_path / "x;touch pwned.yaml"
    hostile.write_text("name: x\n")
    assert main([*far["common"], "launch", "pod", str(hostile)]) == 2
    assert "is not allowed" in capsys.readouterr().err
    assert not list(Path(far["target"].workdir, "runs", "remote").glob("x*"))


def test_hostile_run_tag_from_the_plan_refused_before_connecting(far, tmp_path):
    jobs = Path(far["target"].workdir, "runs", "remote")
    before = sorted(jobs.iterdir())
    with pytest.raises(ValidationError, match="run_dir component"):
        launch_standin(far, tmp_path, "bad$(touch pwned)", n_samples=1)
    assert sorted(jobs.iterdir()) == before
    assert not Path(far["target"].workdir, "pwned").exists()


def test_unknown_host_key_is_refused(far, tmp_path, capsys):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    target = far["target"].model_copy(update={"known_hosts_file": str(empty)})
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        connect(target).run("true", hide=True)
    targets = Path(far["common"][1])
    text = targets.read_text()
    targets.write_text(text.replace(str(far["target"].known_hosts_file), str(empty)))
    try:
        assert main([*far["common"], "status", "pod"]) == 1
        assert "ssh: SSHException: Server '[127.0.0.1]:" in capsys.readouterr().err
    finally:
        targets.write_text(text)
    rsync = subprocess.run(tasks.render.rsync_sync_argv(target, str(REPO), include_git=False), capture_output=True)
    assert rsync.returncode != 0 and b"Host key verification failed" in rsync.stderr
    accept = target.model_copy(update={"known_hosts": "accept-new"})
    assert connect(accept).run("true", hide=True).ok and "127.0.0.1" in empty.read_text()


@pytest.mark.slow
def test_real_smoke_manifest_sync_launch_status_pull_merge(far, capsys):
    """The shipped manifests/smoke.yaml through the real runner on the far side, then a golden merge here."""
    common, local = far["common"], far["local"]
    assert main([*common, "--repo", str(REPO), "sync", "real", "--git"]) == 0
    assert (Path(far["target"].workdir) / ".git" / "HEAD").is_file()
    assert main([*common, "launch", "real", str(REPO / "manifests" / "smoke.yaml")]) == 0
    entry = ledger.select(ledger.load_entries(local / "runs" / "remote_jobs.json"), "real")[-1]
    assert entry.run_dirs[0].startswith("runs/smoke/smoke-")
    target = far["target"].model_copy(update={"name": "real", "run_command": ["python", "-m", "runner", "run"]})
    status = wait_state({**far, "target": target}, entry, {"done", "failed"}, timeout_s=400)
    assert status.state == "done", (status, (Path(entry.job_dir) / "job.log").read_text()[-3000:])
    assert status.tasks[0].n_done == status.tasks[0].n_total > 0
    capsys.readouterr()
    assert main([*common, "--repo", str(local), "pull", "real", "--job", entry.name]) == 0
    assert (local / entry.run_dirs[0] / "results" / "mini.json").is_file()
    assert json.loads((local / "runs" / "remote" / "real" / "registry.json").read_text())
    # the working tree synced from this checkout may hold uncommitted work: the row records the waiver
    assert main([*common, "--repo", str(local), "merge", "real", "--job", entry.name, "--allow", "dirty"]) == 0, (
        capsys.readouterr().err
    )
    golden = json.loads((local / "golden" / "golden_runs.json").read_text())
    assert any(entry.run_dirs[0] in json.dumps(row) for row in golden["rows"].values())


def test_ssh_config_alias_reaches_the_same_host_for_fabric_and_rsync(far, sshd, tmp_path):
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host loopbackpod\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User root\n  IdentityFile {sshd.client_key}\n"
        f"  IdentitiesOnly yes\n  UserKnownHostsFile {sshd.known_hosts}\n  BatchMode yes\n"
    )
    fields = {
        "name": "alias",
        "kind": "runpod",
        "host": "loopbackpod",
        "ssh_config": str(config),
        "known_hosts_file": str(sshd.known_hosts),
        "workdir": str(tmp_path / "far"),
    }
    target = Target.model_validate(fields)
    assert connect(target).run("echo $USER", hide=True).stdout.strip() == "root"
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("x")
    assert tasks.sync(target, repo=tmp_path / "src") == 0
    assert (tmp_path / "far" / "a.txt").read_text() == "x"
