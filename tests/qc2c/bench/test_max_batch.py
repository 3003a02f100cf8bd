"""max-batch: the search finds the known limit of a synthetic memory model, reports cap hits, rebuilds state
after OOM; the CLI runs real optimizer steps of a tiny training manifest on CPU.
.venv/bin/python -m pytest tests/qc2c/bench/test_max_batch.py -q"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from qc2c.bench.max_batch import CudaMeter, OutOfMemory, main, measured_probe, search

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data" / "train" / "synthetic_echo.jsonl"


class SyntheticMemory:
    """memory(batch) = fixed + per_sample * batch, known exactly; a step over the limit raises like a device OOM.

    The step is a real optimizer step on a small model (so rebuilds have something to restore)."""

    def __init__(self, fixed: int, per_sample: int, limit: int) -> None:
        self.fixed, self.per, self.limit = fixed, per_sample, limit
        self.model = nn.Linear(4, 1)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=0.1)
        self.snapshot = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.last_peak, self.rebuilds, self.oom_raised = 0, 0, 0

    def step(self, batch: int) -> int:
        self.last_peak = self.fixed + self.per * batch
        if self.last_peak > self.limit:
            self.oom_raised += 1
            raise OutOfMemory(f"synthetic: {self.last_peak} > {self.limit}")
        loss = self.model(torch.randn(batch, 4)).pow(2).mean()
        loss.backward()
        self.opt.step()
        self.opt.zero_grad()
        return batch * 10

    # meter protocol
    def reset(self) -> None:
        self.last_peak = 0

    def peak(self) -> int:
        return self.last_peak

    def rebuild(self) -> None:
        self.rebuilds += 1
        self.model.load_state_dict(self.snapshot)


@pytest.mark.parametrize(
    ("fixed", "per", "limit"), [(1000, 100, 5050), (0, 7, 1000), (500, 1, 10_000), (10, 300, 400), (0, 10, 25)]
)
def test_search_finds_the_known_limit(fixed: int, per: int, limit: int) -> None:
    mem = SyntheticMemory(fixed, per, limit)
    result = search(measured_probe(mem.step, mem, mem.rebuild), cap=100_000, limit_bytes=limit)
    truth = (limit - fixed) // per
    assert result.max_batch == truth and not result.hit_cap
    probed = [p.batch for p in result.probes]
    if truth >= 2:  # the model is linear: batches 1 and 2 predict it exactly, and one more probe confirms it
        assert result.estimate == truth
        assert probed[2:] == ([truth, truth + 1] if truth > 2 else [3])
    else:
        assert result.estimate is None and probed == [1, 2]
    failed = [p for p in result.probes if not p.fits]
    assert failed and all(p.batch > truth for p in failed) and all(p.error for p in failed)
    assert all(p.step_s is not None and p.tokens_per_s > 0 and p.peak_bytes <= limit for p in result.probes if p.fits)
    assert mem.rebuilds == len(result.probes) and mem.oom_raised == len(failed)
    assert torch.equal(mem.model.weight, mem.snapshot["weight"])  # state rebuilt after the last probe


def test_search_without_estimate_bisects_to_the_limit() -> None:
    mem = SyntheticMemory(100, 9, 1000)
    result = search(measured_probe(mem.step, mem, mem.rebuild), cap=10_000, limit_bytes=None)
    assert result.max_batch == 100 and result.estimate is None and not result.hit_cap


def test_search_reports_a_cap_hit() -> None:
    mem = SyntheticMemory(1000, 100, 1_000_000)
    result = search(measured_probe(mem.step, mem, mem.rebuild), cap=24, limit_bytes=1_000_000)
    assert result.max_batch == 24 and result.hit_cap
    assert max(p.batch for p in result.probes) == 24


def test_nothing_fits() -> None:
    mem = SyntheticMemory(1000, 100, 1050)
    result = search(measured_probe(mem.step, mem, mem.rebuild), cap=64, limit_bytes=1050)
    assert result.max_batch == 0 and [p.batch for p in result.probes] == [1]


MANIFEST = f"""schema: 1
name: tiny_max_batch
milestone: custom
kind: train
pair: {{receiver: "tiny:qwen3", sharer: "tiny:qwen2"}}
train:
  data: {{jsonl: "{DATA}", max_length: 256}}
  projector: {{hidden_dim: 32, intermediate_dim: 32}}
runtime: {{device: cpu, dtype: float32}}
"""


def test_cli_on_a_tiny_training_manifest(tmp_path, capsys) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(MANIFEST)
    assert main([str(path), "--memory-limit-gb", "64", "--cap", "4", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["max_batch"] == 4 and doc["hit_cap"] is True
    assert [p["batch"] for p in doc["probes"]][:2] == [1, 2]
    assert all(p["fits"] and p["peak_bytes"] > 0 and p["tokens_per_s"] > 0 for p in doc["probes"])
    # a limit below what the process already holds: nothing fits, and that is reported, not crashed on
    assert main([str(path), "--memory-limit-gb", "0.01", "--cap", "4"]) == 0
    assert "max batch: 0" in capsys.readouterr().out


def test_cli_refuses_bad_input(tmp_path, capsys) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(MANIFEST)
    assert main([str(path), "--cap", "4"]) == 2
    assert "--memory-limit-gb is required on CPU" in capsys.readouterr().err
    path.write_text(MANIFEST.replace("kind: train", "kind: eval"))
    assert main([str(path), "--memory-limit-gb", "1"]) == 2
    assert capsys.readouterr().err.startswith(f"{path}:1: kind: ")


def test_cuda_limit_counts_what_is_already_allocated(monkeypatch) -> None:
    """The meter's peak includes the loaded models, so the usable limit is free + allocated, with or
    without --memory-limit-gb (without it, the limit was the free memory alone: probes failed too early)."""
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (6_000, 10_000))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 3_000)
    device = torch.device("cuda", 0)
    assert CudaMeter(device, None).limit == 9_000
    assert CudaMeter(device, 8_000).limit == 8_000
    assert CudaMeter(device, 20_000).limit == 9_000


def test_cli_searches_without_and_with_gradient_checkpointing(tmp_path, capsys) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(MANIFEST)
    assert main([str(path), "--memory-limit-gb", "64", "--cap", "2", "--gradient-checkpointing", "both", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert sorted(doc) == ["off", "on"] and doc["on"]["max_batch"] == doc["off"]["max_batch"] == 2
    path.write_text(MANIFEST.replace("  data:", "  objective: kd\n  kd: {path: x}\n  old_data:"))
    assert main([str(path), "--memory-limit-gb", "1"]) == 2
    assert "give its cache with --kd-cache" in capsys.readouterr().err
