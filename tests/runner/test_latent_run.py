"""`runner run` on the latent wire's manifests: stage a killed (SIGKILL) and resumed to the uninterrupted
curve (one diagnostics line per step), stage b from it, and a stage-C eval that loads the wire with `eval.latent.from_run`.
.venv/bin/python -m pytest tests/runner/test_latent_run.py -q"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

TRAIN = """schema: 1
name: {name}
milestone: custom
kind: train
pair: {{receiver: "demo:receiver", sharer: "demo:sharer_llama"}}
train:
  method: latent
  latent: {{stage: {stage}, {source}latent_len: 4, d_z: 16, encoder_heads: 2, gist: true}}
  optim: {{lr: 3.0e-3, batch_size: 8, max_steps: {steps}, warmup_ratio: 0.0, scheduler: constant}}
  save_steps: 2
runtime: {{device: cpu, dtype: float32, container: native}}
"""

EVAL = """schema: 1
name: lt_eval
milestone: custom
kind: eval
pair: {receiver: "demo:sharer_llama", sharer: "demo:sharer"}
eval: {datasets: [demo], limit: 6, batch_size: 3, baselines: [latent, latent_int4], latent: {from_run: lt_b}}
runtime: {device: cpu, dtype: float32, container: native}
"""


def _run(manifest: Path, runs: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "runner", "run", str(manifest), "--runs-dir", str(runs), "--container", "native"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _diagnostics(runs: Path, name: str) -> list[dict]:
    (folder,) = (runs / "custom").glob(f"{name}-*")
    return [json.loads(line) for line in (folder / "diagnostics.jsonl").read_text().splitlines()]


def _finish(manifest: Path, runs: Path) -> str:
    proc = _run(manifest, runs)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return out + err


def test_latent_stages_resume_after_sigkill_and_feed_an_eval(tmp_path) -> None:
    steps = 8
    a = _write(tmp_path / "lt_a.yaml", TRAIN.format(name="lt_a", stage="a", source="", steps=steps))
    runs = tmp_path / "runs"
    proc = _run(a, runs)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not list((runs / "custom").glob("lt_a-*/checkpoint-4")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not list((runs / "custom").glob("lt_a-*/final")), "killed after it finished: nothing to resume"
    assert "resuming from checkpoint-" in _finish(a, runs)
    # one line per step, none twice (the exact curve after a resume: tests/qc2c/latent/test_train.py)
    assert [r["step"] for r in _diagnostics(runs, "lt_a")] == list(range(1, steps + 1))

    b = _write(tmp_path / "lt_b.yaml", TRAIN.format(name="lt_b", stage="b", source="from_run: lt_a, ", steps=2))
    _finish(b, runs)
    (folder,) = (runs / "custom").glob("lt_b-*")
    assert json.loads((folder / "final" / "latent.json").read_text())["config"]["stage"] == "b"

    _finish(_write(tmp_path / "lt_eval.yaml", EVAL), runs)
    (run,) = (runs / "custom").glob("lt_eval-*")
    result = json.loads((run / "results" / "demo.json").read_text())
    assert set(result["settings"]) == {"latent", "latent_int4"}
    assert result["settings"]["latent_int4"]["bytes"]["mean"] < result["settings"]["latent"]["bytes"]["mean"]
    assert result["settings"]["latent"]["qa"]["n"] == 6
