"""bench kd: step costs (KD vs SFT + teacher forward) and the speedrun-style max-batch table, both ways.
.venv/bin/python -m pytest tests/qc2c/bench/test_kd_bench.py -q"""

from __future__ import annotations

import json
from pathlib import Path

from qc2c.bench.kd import main
from qc2c.kd.build import BuildSettings, build_cache
from qc2c.kd.teacher import PairTeacher, conversation_rows
from qc2c.train.data import build_examples, read_jsonl

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data" / "train" / "synthetic_echo.jsonl"
MANIFEST = """schema: 1
name: tiny_kd_bench
kind: train
pair: {receiver: "tiny:qwen3", sharer: "tiny:qwen2"}
fuser: {path: "tiny:qwen3+qwen2"}
kv: {quant: {scheme: int2, group_size: 32}}
train:
  objective: kd
  kd: {path: unused}
  projector: {hidden_dim: 32, intermediate_dim: 48, dropout: 0.0}
  optim: {lr: 1.0e-3, batch_size: 2, grad_accum: 1, max_steps: 2, warmup_ratio: 0.0, scheduler: constant}
  qat: true
runtime: {device: cpu, dtype: float32, container: native}
"""


def _cache(folder: Path) -> Path:
    from qc2c.fuser.sources import load_fuser
    from qc2c.models.pair import load_pair

    pair = load_pair("tiny:qwen3", "tiny:qwen2")
    examples, _ = build_examples(read_jsonl(DATA), pair.receiver_tokenizer, None, 256)
    teacher = PairTeacher(pair, load_fuser("tiny:qwen3+qwen2"), None, pair.receiver_tokenizer.pad_token_id)
    settings = BuildSettings("bench", max_length=64, top_k=8, shard_size=16)
    vocab = pair.receiver.get_output_embeddings().weight.shape[0]
    build_cache(
        folder, teacher, conversation_rows(examples), settings, vocab_size=vocab, teacher_info={}, progress=False
    )
    return folder


def test_kd_bench_prints_costs_and_both_tables_and_writes_them(tmp_path, capsys) -> None:
    cache = _cache(tmp_path / "cache")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(MANIFEST)
    args = [str(manifest), "--kd-cache", str(cache), "--memory-limit-gb", "64", "--cap", "3", "--batch", "2"]
    assert main([*args, "--repeats", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == json.loads((cache / "bench_kd.json").read_text())
    cost = out["cost"]
    assert min(cost["kd_step_s"], cost["sft_step_s"], cost["teacher_forward_s"]) > 0
    ratio = (cost["sft_step_s"] + cost["teacher_forward_s"]) / cost["kd_step_s"]
    assert cost["ratio_sft_plus_teacher_over_kd"] == ratio
    assert [t["gradient_checkpointing"] for t in out["tables"]] == [False, True]
    for t in out["tables"]:
        assert t["max_batch"] == 3 and t["hit_cap"]
        assert [r["status"] for r in t["rows"]] == ["OK", "OK", "MAX"] and all(r["loss"] > 0 for r in t["rows"])
    off, on = ([r["loss"] for r in t["rows"]] for t in out["tables"])
    assert off == on  # each probe starts from the same weights and RNG; checkpointing changes no number


def test_kd_bench_refuses_an_sft_manifest_in_one_line(tmp_path, capsys) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(MANIFEST.replace("  objective: kd\n  kd: {path: unused}\n", "  data: {jsonl: x.jsonl}\n"))
    assert main([str(manifest), "--kd-cache", str(tmp_path), "--memory-limit-gb", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "kd is needed" in err


def test_max_batch_over_a_kd_cache_prints_the_table(tmp_path, capsys) -> None:
    from qc2c.bench.max_batch import main as max_batch

    cache = _cache(tmp_path / "cache")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(MANIFEST)
    assert max_batch([str(manifest), "--kd-cache", str(cache), "--memory-limit-gb", "64", "--cap", "1"]) == 0
    out = capsys.readouterr().out
    assert "gradient checkpointing off: max batch 1" in out and "gradient checkpointing on: max batch 1" in out
    assert (cache / "bench_kd.json").is_file()
