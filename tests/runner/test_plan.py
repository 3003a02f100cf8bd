"""python -m pytest tests/runner/test_plan.py -q"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runner.manifest import load_manifest
from runner.plan import make_plan
from runner.registry import Registry

BASE = """\
schema: 1
name: {name}
milestone: ptest
pair: {{receiver: "tiny:qwen3", sharer: "tiny:qwen2"}}
fuser: {fuser}
eval: {{datasets: [mini], limit: 4}}
runtime: {{device: cpu, dtype: float32, container: native}}
"""


def _manifest(tmp: Path, name: str = "p1", fuser: str = '{path: "tiny:qwen3+qwen2"}'):
    path = tmp / f"{name}.yaml"
    path.write_text(BASE.format(name=name, fuser=fuser))
    return load_manifest(path), path


def test_run_tag_and_folder_come_from_name_and_run_key(tmp_path: Path) -> None:
    m, path = _manifest(tmp_path)
    plan = make_plan(m, source=path, runs_dir=tmp_path / "runs")
    assert plan.run_tag == f"p1-{m.run_key()[:10]}"
    assert plan.run_dir == tmp_path / "runs" / "ptest" / plan.run_tag
    assert (plan.decision, plan.problems) == ("new", [])
    assert plan.settings == ["compressed", "receiver", "c2c_fp16"]
    assert make_plan(m, source=path, runs_dir=tmp_path / "runs").run_dir == plan.run_dir  # stable across requeues


def test_decisions_follow_registry_and_progress(tmp_path: Path) -> None:
    m, path = _manifest(tmp_path)
    runs = tmp_path / "runs"
    plan = make_plan(m, source=path, runs_dir=runs)
    (plan.run_dir / "progress").mkdir(parents=True)
    (plan.run_dir / "progress" / "mini.jsonl").write_text('{"id": "x"}\n')
    assert make_plan(m, source=path, runs_dir=runs).decision == "resume"
    reg = Registry(runs)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    reg.set_status(plan.run_key, "running", pid=dead.pid)  # a killed run: dead pid -> resume, not busy
    assert make_plan(m, source=path, runs_dir=runs).decision == "resume"
    reg.set_status(plan.run_key, "failed", reason="3 sample errors")
    assert make_plan(m, source=path, runs_dir=runs).decision == "rerun"
    reg.set_status(plan.run_key, "complete")
    assert make_plan(m, source=path, runs_dir=runs).decision == "skip"
    reg.invalidate(plan.run_key, "bad fuser")
    later = make_plan(m, source=path, runs_dir=runs)
    assert (later.decision, "bad fuser" in later.reason) == ("rerun", True)


def test_live_running_entry_is_busy(tmp_path: Path) -> None:
    m, path = _manifest(tmp_path)
    runs = tmp_path / "runs"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        Registry(runs).set_status(m.run_key(), "running", pid=holder.pid)
        assert make_plan(m, source=path, runs_dir=runs).decision == "busy"
    finally:
        holder.kill()
        holder.wait()


def test_from_run_resolves_to_final_of_latest_complete_run(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    m, path = _manifest(tmp_path, "p2", fuser="{from_run: fuser-train}")
    missing = make_plan(m, source=path, runs_dir=runs)
    assert missing.problems and "no complete run of manifest 'fuser-train'" in missing.problems[0]
    old, new = tmp_path / "old", tmp_path / "new"
    (old / "final").mkdir(parents=True)
    (new / "final").mkdir(parents=True)
    reg = Registry(runs)
    reg.set_status("k-old", "complete", run_dir=str(old), manifest="fuser-train")
    reg.set_status("k-new", "complete", run_dir=str(new), manifest="fuser-train")
    reg.set_status("k-bad", "failed", run_dir=str(tmp_path / "bad"), manifest="fuser-train")
    plan = make_plan(m, source=path, runs_dir=runs)
    assert plan.problems == [] and plan.fuser_ref == str(new / "final")
    assert plan.fuser_source.startswith("from_run:fuser-train@")


@pytest.mark.parametrize("fuser", ['{path: "tiny:qwen3+llama"}'])
def test_preflight_refuses_a_fuser_that_does_not_fit_the_pair(tmp_path: Path, fuser: str) -> None:
    from runner.cli.plan import preflight_problems

    m, path = _manifest(tmp_path, "p3", fuser=fuser)
    problems = preflight_problems(make_plan(m, source=path, runs_dir=tmp_path / "runs"))
    assert problems and all(p.startswith("fuser: ") for p in problems)
