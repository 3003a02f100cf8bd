"""`runner run` on a kind: train manifest: run folder, registry, SIGTERM -> 75 -> resume, and a kind: eval
manifest that loads the trained fuser with `fuser: {from_run: ...}`.
.venv/bin/python -m pytest tests/qc2c/train/test_runner_train.py -q"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data" / "train" / "synthetic_echo.jsonl"

TRAIN = """schema: 1
name: {name}
milestone: custom
kind: train
pair: {{receiver: "tiny:qwen3", sharer: "tiny:qwen2"}}
train:
  data: {{jsonl: "{data}", max_length: 256}}
  projector: {{hidden_dim: 32, intermediate_dim: 32, dropout: 0.0}}
  optim: {{lr: 3.0e-3, batch_size: 4, grad_accum: 1, max_steps: {steps}, warmup_ratio: 0.0, scheduler: constant}}
  save_steps: 2
runtime: {{device: cpu, dtype: float32, container: native}}
"""

EVAL = """schema: 1
name: use_trained
milestone: custom
kind: eval
pair: {{receiver: "tiny:qwen3", sharer: "tiny:qwen2"}}
fuser: {{from_run: {name}}}
eval: {{datasets: [mini], limit: 4, baselines: [receiver]}}
runtime: {{device: cpu, dtype: float32, container: native}}
"""


def _run(manifest: Path, runs: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "runner", "run", str(manifest), "--runs-dir", str(runs), "--container", "native"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_train_then_eval_from_run(tmp_path) -> None:
    runs = tmp_path / "runs"
    train = _write(tmp_path / "t.yaml", TRAIN.format(name="tiny_train", data=DATA, steps=3))
    proc = _run(train, runs)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    registry = json.loads((runs / "registry.json").read_text())
    (entry,) = registry.values()
    run_dir = Path(entry["run_dir"])
    assert entry["status"] == "complete" and entry["manifest"] == "tiny_train"
    assert (run_dir / "final" / "projector_0.pt").is_file() and (run_dir / "config.json").is_file()
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "complete" and status["datasets"]["train"] == {"n_done": 3, "n_total": 3, "n_errors": 0}
    assert len((run_dir / "diagnostics.jsonl").read_text().splitlines()) == 3
    assert (run_dir / "provenance.json").is_file() and (run_dir / "manifest.yaml").is_file()
    ev = _write(tmp_path / "e.yaml", EVAL.format(name="tiny_train"))
    proc = _run(ev, runs)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    result = next((runs / "custom").glob("use_trained-*/results/mini.json"))
    doc = json.loads(result.read_text())
    assert doc["fuser"]["source"].startswith("from_run:tiny_train"), doc["fuser"]
    assert doc["fuser"]["loaded"] is True


@pytest.mark.slow
def test_sigterm_preempts_with_checkpoint_then_resumes(tmp_path) -> None:
    runs = tmp_path / "runs"
    train = _write(tmp_path / "t.yaml", TRAIN.format(name="tiny_preempt", data=DATA, steps=400))
    proc = _run(train, runs)
    deadline = time.monotonic() + 240
    diag = None
    while time.monotonic() < deadline:
        found = list(runs.glob("custom/tiny_preempt-*/diagnostics.jsonl"))
        if found and len(found[0].read_text().splitlines()) >= 3:
            diag = found[0]
            break
        time.sleep(0.2)
    assert diag is not None, "training never reached step 3"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err[-3000:]
    run_dir = diag.parent
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "preempted"
    steps = [json.loads(x)["step"] for x in diag.read_text().splitlines()]
    assert (run_dir / f"checkpoint-{steps[-1]}").is_dir()
    # the same command resumes: its first diagnostics line is the step after the checkpoint
    proc = _run(train, runs)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(diag.read_text().splitlines()) < len(steps) + 2:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == 75
    new = [json.loads(x)["step"] for x in diag.read_text().splitlines()]
    assert new[: len(steps)] == steps and new == list(range(1, len(new) + 1)) and len(new) > len(steps)
    assert f"resuming from checkpoint-{steps[-1]}" in (run_dir / "logs" / "run.log").read_text()


def test_bad_training_data_fails_the_run_with_file_line_field(tmp_path) -> None:
    from runner.execute import run_plan
    from runner.manifest import load_manifest
    from runner.plan import make_plan

    bad = tmp_path / "bad.jsonl"
    bad.write_text(DATA.read_text().splitlines()[0] + "\n" + json.dumps({"conversations": [{"from": "x"}]}) + "\n")
    path = _write(tmp_path / "t.yaml", TRAIN.format(name="tiny_bad", data=bad, steps=2))
    runs = tmp_path / "runs"
    plan = make_plan(load_manifest(path), source=path, runs_dir=runs)
    assert run_plan(plan) == 1
    (entry,) = json.loads((runs / "registry.json").read_text()).values()
    assert entry["status"] == "failed" and f"{bad}:2: conversations[0]: " in entry["reason"], entry["reason"]
    assert not (plan.run_dir / "final").exists()
