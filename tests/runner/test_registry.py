"""python -m pytest tests/runner/test_registry.py -q"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runner import fsio
from runner.registry import Registry, RegistryError

WRITER = """
import sys
from runner.registry import Registry
reg = Registry(sys.argv[1])
worker = int(sys.argv[2])
for i in range(int(sys.argv[3])):
    reg.set_status(f"key-{worker}-{i}", "running", run_dir=f"runs/x/{worker}-{i}", manifest=f"m{worker}")
    reg.set_status(f"key-{worker}-{i}", "complete")
"""


def test_sixteen_concurrent_writers_lose_nothing_and_json_stays_valid(tmp_path: Path) -> None:
    n_workers, n_each = 16, 5
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(w), str(n_each)]) for w in range(n_workers)
    ]
    # read while they write: every read must parse (atomic replace, never half a file)
    n_reads = 0
    while any(p.poll() is None for p in procs):
        path = tmp_path / "registry.json"
        if path.exists():
            json.loads(path.read_text())
            n_reads += 1
    assert all(p.wait() == 0 for p in procs)
    data = json.loads((tmp_path / "registry.json").read_text())
    assert len(data) == n_workers * n_each
    assert {entry["status"] for entry in data.values()} == {"complete"}


def test_complete_is_never_downgraded_by_a_run(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    reg.set_status("k", "running", run_dir="runs/a", manifest="a")
    reg.set_status("k", "complete")
    assert reg.set_status("k", "running").status == "complete"
    assert reg.set_status("k", "failed", reason="boom").status == "complete"
    assert reg.get("k").status == "complete"


def test_invalidate_needs_reason_and_moves_complete_to_invalid(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    reg.set_status("k", "complete", run_dir="runs/a", manifest="a")
    with pytest.raises(RegistryError, match="reason"):
        reg.invalidate("k", " ")
    entry = reg.invalidate("k", "fuser folder had no final/")
    assert (entry.status, entry.reason) == ("invalid", "fuser folder had no final/")
    assert reg.set_status("k", "running").status == "running"


def test_running_entry_records_pid_host_heartbeat(tmp_path: Path) -> None:
    entry = Registry(tmp_path).set_status("k", "running", run_dir="runs/a", manifest="a")
    assert entry.pid and entry.host and entry.heartbeat


def test_dead_pid_is_not_live(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    reg = Registry(tmp_path)
    reg.set_status("k", "running", pid=proc.pid)
    assert not reg.get("k").is_live()


def test_latest_complete_picks_the_manifest_name(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    reg.set_status("a1", "complete", run_dir="runs/a1", manifest="fuser_a")
    reg.set_status("b1", "complete", run_dir="runs/b1", manifest="fuser_b")
    reg.set_status("a2", "failed", run_dir="runs/a2", manifest="fuser_a")
    assert reg.latest_complete("fuser_a").run_dir == "runs/a1"
    assert reg.latest_complete("nope") is None


def test_corrupt_registry_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "registry.json").write_text("{not json")
    with pytest.raises(RegistryError, match=r"registry.json:1: registry is not valid JSON"):
        Registry(tmp_path).read()


def test_unknown_key_and_prefix_resolution(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    reg.set_status("abcdef123", "complete")
    assert reg.resolve_key("abc") == "abcdef123"
    with pytest.raises(RegistryError, match="unknown run key"):
        reg.invalidate("zzz", "why")


def test_release_makes_a_preempted_run_resumable_from_another_host(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    reg.set_status("k", "running", host="other-node")  # as seen from this host: alive by heartbeat only
    assert reg.get("k").is_live()
    reg.release("k", "preempted (SIGTERM)")
    entry = reg.get("k")
    assert entry.status == "running" and not entry.is_live() and entry.reason == "preempted (SIGTERM)"


def test_heartbeat_every_refreshes_only_after_its_interval(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    reg.set_status("k", "running")
    stale = {**reg.read()}
    stale["k"]["heartbeat"] = "2000-01-01T00:00:00+00:00"
    fsio.atomic_write_json(reg.path, stale)
    reg.heartbeat_every("k", 3600.0)()
    assert reg.get("k").heartbeat == "2000-01-01T00:00:00+00:00", "refreshed before its interval"
    reg.heartbeat_every("k", 0.0)()
    assert reg.get("k").heartbeat != "2000-01-01T00:00:00+00:00"
    reg.set_status("k", "complete")
    reg.heartbeat_every("k", 0.0)()  # any other status is left alone
    assert reg.get("k").status == "complete"
