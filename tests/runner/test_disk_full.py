"""python -m pytest tests/runner/test_disk_full.py -q

A full disk stops a run with one line naming the file and the free space (exit 1), no traceback and no
"--- Logging error ---"; status.json says failed and the registry entry is released, so once space is freed
the same command resumes. Tested with an injected ENOSPC (always) and on a real, tiny tmpfs (as root).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runner import fsio
from runner.exitcodes import EXIT_OK, EXIT_RUN_FAILED
from runner.registry import Registry

REPO = Path(__file__).resolve().parents[2]
MANIFEST = """\
schema: 1
name: full
milestone: disk
pair: {{receiver: "tiny:qwen3", sharer: "tiny:qwen2"}}
eval: {{datasets: [mini], limit: {limit}, batch_size: 2, baselines: [receiver, sharer]}}
runtime: {{device: cpu, dtype: float32, container: native}}
"""


def _assert_consistent_after_full_disk(runs: Path) -> Path:
    (entry,) = Registry(runs).entries()
    assert entry.status == "running" and entry.pid is None and "no space" in entry.reason  # released
    run_dir = Path(entry.run_dir)
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "failed" and "no space left on device" in status["reason"]
    return run_dir


def test_injected_enospc_fails_in_one_line_and_releases(tmp_path: Path, monkeypatch, capsys) -> None:
    from runner.execute import run_plan
    from runner.manifest import load_manifest
    from runner.plan import make_plan

    path = tmp_path / "full.yaml"
    path.write_text(MANIFEST.format(limit=8))
    runs = tmp_path / "runs"
    real, calls = fsio.append_line_fsync, []

    def full_after_one_batch(target, lines):
        calls.append(target)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))
        real(target, lines)

    monkeypatch.setattr(fsio, "append_line_fsync", full_after_one_batch)
    plan = make_plan(load_manifest(path), source=path, runs_dir=runs)
    assert run_plan(plan) == EXIT_RUN_FAILED
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "no space left on device" in line]
    assert len(lines) == 1 and str(calls[-1]) in lines[0] and "MB free" in lines[0], err
    assert "Traceback" not in err and "Logging error" not in err
    _assert_consistent_after_full_disk(runs)

    monkeypatch.setattr(fsio, "append_line_fsync", real)
    assert run_plan(make_plan(load_manifest(path), source=path, runs_dir=runs)) == EXIT_OK
    assert "resum" in capsys.readouterr().err  # the released entry resumes, it is not re-run from scratch


def test_no_space_line_names_the_file_and_the_free_space(tmp_path: Path) -> None:
    with pytest.raises(OSError) as info:
        with fsio._naming(tmp_path / "x.json"):
            raise OSError(errno.ENOSPC, "No space left on device")  # a failed write() names no file
    line = fsio.no_space_line(info.value, tmp_path)
    assert line.startswith(f"{tmp_path / 'x.json'}: no space left on device (") and "MB free on" in line


def _mount_tmpfs(where: Path, size_kb: int) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(where)], capture_output=True)
    return done.returncode == 0


@pytest.mark.slow
def test_a_real_full_tmpfs_fails_cleanly_and_the_rerun_resumes(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, 1024):
        pytest.skip("needs root and tmpfs mounts (CI runs as root)")
    try:
        runs, manifest = disk / "runs", tmp_path / "full.yaml"
        manifest.write_text(MANIFEST.format(limit=40))
        filler = disk / "filler"
        filler.write_bytes(b"\0" * (shutil.disk_usage(disk).free - 40 * 1024))  # ten pages: fills mid-run
        cmd = [sys.executable, "-m", "runner", "run", str(manifest), "--runs-dir", str(runs)]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        first = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert first.returncode == EXIT_RUN_FAILED, first.stderr
        full = [line for line in first.stderr.splitlines() if "no space left on device" in line]
        assert len(full) == 1 and f"{disk}" in full[0] and "MB free" in full[0], first.stderr
        assert "Traceback" not in first.stderr and "Logging error" not in first.stderr
        run_dir = _assert_consistent_after_full_disk(runs)

        filler.unlink()
        again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert again.returncode == EXIT_OK, again.stderr
        lines = (run_dir / "progress" / "mini.jsonl").read_text().splitlines()
        assert len({json.loads(line)["id"] for line in lines}) == len(lines) == 40
        assert Registry(runs).entries()[0].status == "complete"
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
