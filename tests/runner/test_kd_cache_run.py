"""`runner run` on kind: kd_cache, then a kind: train manifest with train.objective: kd reading it by from_run.
.venv/bin/python -m pytest tests/runner/test_kd_cache_run.py -q"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "train" / "synthetic_echo.jsonl"
PAIR = 'pair: {receiver: "tiny:qwen3", sharer: "tiny:qwen2"}'
RUNTIME = "runtime: {device: cpu, dtype: float32, container: native}"

CACHE = f"""schema: 1
name: tiny_kd_cache
kind: kd_cache
{PAIR}
fuser: {{path: "tiny:qwen3+qwen2"}}
kd_cache: {{teacher: c2c_fp16, data: {{jsonl: "{DATA}", max_length: 64}}, top_k: 8, random_negatives: 4, shard_size: 6}}
{RUNTIME}
"""

TRAIN = f"""schema: 1
name: tiny_kd_train
kind: train
{PAIR}
kv: {{quant: {{scheme: int2, group_size: 32}}}}
train:
  objective: kd
  kd: {{from_run: tiny_kd_cache}}
  projector: {{hidden_dim: 32, intermediate_dim: 32, dropout: 0.0}}
  optim: {{lr: 3.0e-3, batch_size: 4, grad_accum: 1, max_steps: 3, warmup_ratio: 0.0, scheduler: constant}}
  qat: true
  gradient_checkpointing: true
  save_steps: 2
{RUNTIME}
"""


def _run(manifest: Path, runs: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "runner", "run", str(manifest), "--runs-dir", str(runs), "--container", "native"]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_kd_cache_run_then_kd_training_from_run(tmp_path) -> None:
    runs = tmp_path / "runs"
    (tmp_path / "train.yaml").write_text(TRAIN)
    early = _run(tmp_path / "train.yaml", runs)
    assert early.returncode == 1 and "train.kd.from_run: no complete kind: kd_cache run" in early.stderr
    (tmp_path / "cache.yaml").write_text(CACHE)
    built = _run(tmp_path / "cache.yaml", runs)
    assert built.returncode == 0, built.stderr[-3000:]
    (cache_dir,) = (runs / "custom").glob("tiny_kd_cache-*")
    meta = json.loads((cache_dir / "meta.json").read_text())
    assert meta["name"] == "tiny_kd_cache_L64_K8_R4" and meta["n_rows"] == 16 and len(meta["shards"]) == 3
    teacher = meta["teacher"]
    assert teacher["kind"] == "c2c_fp16" and len(teacher["fuser"]["sha256"]) == 64 and teacher["codec"] is None
    assert teacher["models"]["receiver"]["ref"] == "tiny:qwen3" and "torch" in teacher["versions"]
    status = json.loads((cache_dir / "status.json").read_text())
    assert status["state"] == "complete" and status["datasets"]["kd_cache"]["n_done"] == 16
    assert (cache_dir / "provenance.json").is_file() and (cache_dir / "manifest.yaml").is_file()
    again = _run(tmp_path / "cache.yaml", runs)
    assert again.returncode == 0 and "skip" in again.stderr
    trained = _run(tmp_path / "train.yaml", runs)
    assert trained.returncode == 0, trained.stderr[-3000:]
    (train_dir,) = (runs / "custom").glob("tiny_kd_train-*")
    assert (train_dir / "final").is_dir()
    data = json.loads((train_dir / "provenance.json").read_text())["datasets"]["train"]
    assert data["content_sha256"] == meta["content_sha256"] and data["kd_cache"] == str(cache_dir)
    lines = [json.loads(x) for x in (train_dir / "diagnostics.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and all("top1_agreement" in x for x in lines)


def test_plan_reads_the_kd_cache_meta_and_names_its_problems(tmp_path) -> None:
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "meta.json").write_text('{"format": "qc2c-kd-cache"}')
    text = TRAIN.replace("kd: {from_run: tiny_kd_cache}", f'kd: {{path: "{tmp_path / "cache"}"}}')
    (tmp_path / "train.yaml").write_text(text)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "runner", "plan", str(tmp_path / "train.yaml"), "--runs-dir", str(tmp_path / "runs")]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert f"train.kd: {tmp_path / 'cache' / 'meta.json'}: top_k: missing" in done.stderr
