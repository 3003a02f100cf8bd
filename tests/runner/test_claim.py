"""python -m pytest tests/runner/test_claim.py -q

One owner per run: claiming a run is one locked compare-and-set in runs/registry.json. N copies of one
manifest started at once, under CPU load, leave exactly one process scoring; the others say "already
running (pid ...)" and exit 3 without touching the run folder (or skip, when the winner already finished).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.exitcodes import EXIT_ALREADY_RUNNING, EXIT_OK
from runner.registry import AlreadyRunning, Registry, process_start

REPO = Path(__file__).resolve().parents[2]
MANIFEST = """\
schema: 1
name: {name}
milestone: claim
pair: {{receiver: "tiny:qwen3", sharer: "tiny:qwen2"}}
eval: {{datasets: [mini], limit: 12, batch_size: 2, baselines: [receiver]}}
runtime: {{device: cpu, dtype: float32, container: native}}
"""


def _claimer(runs: str, start, done, results) -> None:
    """Child process: claim at the same instant as its siblings; stay alive until all have tried."""
    start.wait()
    try:
        Registry(runs).claim("k", run_dir="runs/x", manifest="m")
        results.put(("won", os.getpid()))
    except AlreadyRunning as exc:
        results.put(("lost", str(exc)))
    done.wait()


@pytest.mark.parametrize("round_", range(5))
def test_exactly_one_of_n_simultaneous_claims_wins(tmp_path: Path, round_: int) -> None:
    n = 8
    ctx = multiprocessing.get_context("fork")
    start, done, results = ctx.Barrier(n), ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_claimer, args=(str(tmp_path), start, done, results)) for _ in range(n)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=60) for _ in range(n)]
    for proc in procs:
        proc.join(timeout=60)
    winners = [pid for what, pid in outcomes if what == "won"]
    assert len(winners) == 1, outcomes
    assert all(f"already running (pid {winners[0]} on " in msg for what, msg in outcomes if what == "lost")
    entry = Registry(tmp_path).get("k")
    assert (entry.status, entry.pid) == ("running", winners[0])


def test_a_dead_owner_or_a_reused_pid_is_taken_over(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    reg.set_status("k", "running", pid=dead.pid)
    assert reg.claim("k", run_dir="runs/x", manifest="m").pid == dead.pid  # the entry before the claim
    assert reg.get("k").pid == os.getpid() and reg.get("k").raw["pid_start"] == process_start(os.getpid())
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        reg.set_status("k", "running", pid=holder.pid)
        with pytest.raises(AlreadyRunning, match=f"already running \\(pid {holder.pid} "):
            reg.claim("k", run_dir="runs/x", manifest="m")
        data = json.loads(reg.path.read_text())
        data["k"]["pid_start"] += 1  # the same pid, but another process: the pid was reused
        reg.path.write_text(json.dumps(data))
        reg.claim("k", run_dir="runs/x", manifest="m")
        assert reg.get("k").pid == os.getpid()
    finally:
        holder.kill()
        holder.wait()


def test_claim_leaves_a_complete_run_alone(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    reg.set_status("k", "complete", run_dir="runs/a")
    assert reg.claim("k", run_dir="runs/b", manifest="m").status == "complete"
    assert reg.get("k").status == "complete" and reg.get("k").run_dir == "runs/a"


def test_a_finishing_process_never_overwrites_a_live_owner(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        reg = Registry(tmp_path)
        reg.set_status("k", "running", pid=holder.pid)
        assert reg.set_status("k", "failed", reason="late loser").status == "running"
    finally:
        holder.kill()
        holder.wait()


def _hogs(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(2))
def test_simultaneous_launches_under_load_run_once(tmp_path: Path, round_: int) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text(MANIFEST.format(name="twice"))
    runs = tmp_path / "runs"
    env = {**os.environ, "PYTHONPATH": str(REPO), "QC2C_KV_KERNELS": "eager"}
    cmd = [sys.executable, "-m", "runner", "run", str(path), "--runs-dir", str(runs)]
    hogs = _hogs(2)
    try:
        procs = [
            subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(4)
        ]
        outs = [(proc.wait(timeout=300), proc.stderr.read()) for proc in procs]
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    codes = sorted(code for code, _ in outs)
    assert set(codes) <= {EXIT_OK, EXIT_ALREADY_RUNNING}, outs
    for code, err in outs:
        if code == EXIT_ALREADY_RUNNING:
            assert "already running (pid " in err and "Traceback" not in err
    (run_dir,) = list((runs / "claim").iterdir())
    log = (run_dir / "logs" / "run.log").read_text()
    assert log.count(": decision ") == 1, log  # exactly one process ran the run body
    ids = [json.loads(line)["id"] for line in (run_dir / "progress" / "mini.jsonl").read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 12
    assert json.loads((run_dir / "status.json").read_text())["state"] == "complete"
    assert {e.status for e in Registry(runs).entries()} == {"complete"}
