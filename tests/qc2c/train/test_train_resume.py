"""Resume after SIGKILL: the loss curve continues as in an uninterrupted run.
.venv/bin/python -m pytest tests/qc2c/train/test_resume.py -q"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from qc2c.config import TrainConfig, from_json
from qc2c.train.sft import Trainer, TrainingStopped, TrainSpec

KILL_SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys
    from qc2c.config import TrainConfig, from_json
    from qc2c.train.sft import Trainer, TrainSpec
    raw = json.loads(sys.argv[1])
    spec = TrainSpec(**{**raw, "train": from_json(TrainConfig, raw["train"])})
    def kill(step, record):
        if step == int(sys.argv[3]):
            os.kill(os.getpid(), signal.SIGKILL)
    Trainer(spec, sys.argv[2]).train(on_step=kill, progress=False)
    """
)


def _spec(section, **optim) -> dict:
    return {"receiver": "tiny:qwen3", "sharer": "tiny:qwen2", "train": section(optim={"max_steps": 10, **optim})}


def _build(raw: dict) -> TrainSpec:
    return TrainSpec(**{**raw, "train": from_json(TrainConfig, raw["train"])})


def _curve(out) -> list[float]:
    lines = [json.loads(x) for x in (out / "diagnostics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(1, len(lines) + 1))
    return [r["loss"] for r in lines]


def test_resume_after_sigkill_continues_the_curve(tmp_path, section) -> None:
    raw = _spec(section, lr=2e-3)
    raw["train"]["projector"]["dropout"] = 0.1  # dropout + Gumbel noise: the RNG state must be restored too
    ref = Trainer(_build(raw), tmp_path / "ref").train(progress=False)
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-c", KILL_SCRIPT, json.dumps(raw), str(killed), "6"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert len(_curve(killed)) == 6 and (killed / "checkpoint-4").is_dir() and not (killed / "final").exists()
    partial = killed / ".checkpoint-8.tmp-dead"  # what a kill during a save leaves: never read, then removed
    partial.mkdir()
    (partial / "projector_0.pt").write_bytes(b"half")
    resumed = Trainer(_build(raw), killed).train(progress=False)
    assert not partial.exists()
    assert resumed.resumed_from == 4
    assert torch.allclose(torch.tensor(_curve(killed)), torch.tensor(_curve(tmp_path / "ref")), atol=1e-5)
    assert len(ref.losses) == 10
    final_ref = torch.load(tmp_path / "ref" / "final" / "projector_0.pt")
    final_res = torch.load(killed / "final" / "projector_0.pt")
    for k in final_ref:
        assert torch.allclose(final_ref[k], final_res[k], atol=1e-5), k


def test_stop_request_checkpoints_then_resume(tmp_path, section) -> None:
    raw = _spec(section)
    trainer = Trainer(_build(raw), tmp_path)
    with pytest.raises(TrainingStopped) as stop:
        trainer.train(should_stop=lambda: True, progress=False)
    assert stop.value.step == 1 and (tmp_path / "checkpoint-1").is_dir()
    result = Trainer(_build(raw), tmp_path).train(progress=False)
    assert result.resumed_from == 1 and result.steps == 10 and len(_curve(tmp_path)) == 10
