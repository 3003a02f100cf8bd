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
    from runner.preflight import preflight_problems

    m, path = _manifest(tmp_path, "p3", fuser=fuser)
    problems = preflight_problems(make_plan(m, source=path, runs_dir=tmp_path / "runs"))
    assert problems and all(p.startswith("fuser: ") for p in problems)


TRAIN = """\
schema: 1
name: {name}
milestone: ptest
kind: train
pair: {{receiver: "tiny:qwen3", sharer: "tiny:qwen2"}}
train:
  data: {data}
runtime: {{device: {device}, dtype: float32, container: native}}
"""


def _offline(monkeypatch) -> None:
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(var, "1")  # what runner plan/run set by default; restored after the test


def test_plan_preflights_a_train_manifest_and_reports_every_problem(tmp_path: Path, monkeypatch, capsys) -> None:
    from runner.__main__ import main

    _offline(monkeypatch)
    path = tmp_path / "t1.yaml"
    path.write_text(TRAIN.format(name="t1", data=f"{{jsonl: {tmp_path / 'nowhere.jsonl'}}}", device="cuda:7"))
    assert main(["plan", str(path), "--runs-dir", str(tmp_path / "runs")]) == 1
    err = capsys.readouterr().err
    assert "runtime.device: 'cuda:7' requested but no CUDA device is visible" in err
    assert "nowhere.jsonl:1: train.data.jsonl: no such file" in err and "Traceback" not in err


def test_an_uncached_train_dataset_names_the_prefetch_command(tmp_path: Path, monkeypatch) -> None:
    from runner.preflight import preflight_problems

    _offline(monkeypatch)
    path = tmp_path / "t2.yaml"
    path.write_text(TRAIN.format(name="t2", data="{dataset: qc2c-test/surely-not-cached}", device="cpu"))
    problems = preflight_problems(make_plan(load_manifest(path), source=path, runs_dir=tmp_path / "runs"))
    assert len(problems) == 1 and problems[0].startswith("train.data.dataset: 'qc2c-test/surely-not-cached'")
    assert "python -m qc2c.prefetch train-data qc2c-test/surely-not-cached --split train" in problems[0]


def test_runs_are_offline_unless_downloads_are_allowed(monkeypatch) -> None:
    import os

    from runner.preflight import OFFLINE_VARS, offline_unless

    env = {"HF_DATASETS_OFFLINE": "0"}  # a variable the user set stays as set
    monkeypatch.setattr(os, "environ", env)
    offline_unless(True)
    assert env == {"HF_DATASETS_OFFLINE": "0"}
    offline_unless(False)
    assert env == {**dict.fromkeys(OFFLINE_VARS, "1"), "HF_DATASETS_OFFLINE": "0"}


def test_the_cli_imports_no_hugging_face_library_before_it_can_go_offline() -> None:
    """offline_unless must run before huggingface_hub / datasets / transformers read their offline switches
    at import, so building the parser (every subcommand module, at the top) must not import them."""
    code = (
        "import sys, runner.__main__ as m\n"
        "m.build_parser()\n"
        "print(sorted(k for k in ('huggingface_hub', 'datasets', 'transformers') if k in sys.modules))\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_runner_plan_imports_no_torch() -> None:
    """remote/ imports PlanError from runner.plan on the submitting machine; planning needs no torch there."""
    code = "import sys, runner.plan\nprint('torch' in sys.modules)\n"
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout.strip()) == (0, "False"), done.stderr


def test_a_bare_manifest_name_is_found_in_manifests_or_says_did_you_mean(tmp_path, monkeypatch, capsys) -> None:
    from runner.__main__ import main

    (tmp_path / "manifests" / "sweeps").mkdir(parents=True)
    (tmp_path / "manifests" / "m7_align1.yaml").write_text(BASE.format(name="m7_align1", fuser="{path: tiny}"))
    monkeypatch.chdir(tmp_path)
    for arg in ("m7_align1.yaml", "m7_align1"):
        assert main(["plan", arg, "--no-preflight", "--runs-dir", "runs"]) in (0, 1)
        assert "run_key" in capsys.readouterr().out
    assert main(["plan", "m7_algn1", "--no-preflight"]) == 2
    assert "no such manifest file (did you mean manifests/m7_align1.yaml?)" in capsys.readouterr().err


def test_a_renamed_copy_of_a_complete_run_names_the_folder_that_holds_it(tmp_path: Path) -> None:
    m, path = _manifest(tmp_path, "orig")
    runs = tmp_path / "runs"
    first = make_plan(m, source=path, runs_dir=runs)
    Registry(runs).set_status(first.run_key, "complete", run_dir=str(first.run_dir), manifest="orig")
    copy, copy_path = _manifest(tmp_path, "renamed")
    plan = make_plan(copy, source=copy_path, runs_dir=runs)
    assert plan.decision == "skip" and plan.run_dir == first.run_dir


@pytest.mark.parametrize("layers, warned", [("[1]", True), ("[2]", False), ("0-1", False)])
def test_plan_warns_about_a_precision_override_that_saves_nothing(tmp_path, capsys, layers, warned) -> None:
    """The tiny fuser feeds receiver layers 0 and 1 from sharer layer 0, sent once at the higher precision."""
    from runner.__main__ import main

    path = tmp_path / "prec.yaml"
    path.write_text(
        BASE.format(name="prec", fuser='{path: "tiny:qwen3+qwen2"}')
        + f"kv:\n  quant: {{scheme: int8}}\n  precision:\n    overrides: [{{layers: {layers}, scheme: int2}}]\n"
    )
    assert main(["plan", str(path), "--runs-dir", str(tmp_path / "runs")]) == 0
    err = capsys.readouterr().err
    expected = "warning: kv.precision.overrides.0: int2 saves nothing on receiver layers [1]: "
    assert (expected in err) is warned, err
