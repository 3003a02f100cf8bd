"""Optimizer groups, LR schedule, gate-temperature annealing.
.venv/bin/python -m pytest tests/qc2c/train/test_schedule.py -q"""

from __future__ import annotations

import json
import math

import pytest
from torch import nn

from qc2c.config import TrainConfig, from_json
from qc2c.fuser.projector import C2CProjector
from qc2c.train.schedule import build_optimizer, build_scheduler, param_groups, total_optimizer_steps
from qc2c.train.sft import Trainer, TrainSpec


def _projectors() -> nn.ModuleList:
    args = {"source_dim": 4, "target_dim": 4, "hidden_dim": 8, "intermediate_dim": 8}
    return nn.ModuleList([C2CProjector(**args), C2CProjector(**args)])


def test_three_groups_cover_every_parameter_once() -> None:
    projectors = _projectors()
    groups = param_groups(projectors)
    names = [n for params in groups.values() for n, _ in params]
    assert sorted(names) == sorted(n for n, _ in projectors.named_parameters())
    assert all("gate" in n for n, _ in groups["gate"]) and len(groups["gate"]) == 4  # key/value logit x 2
    opt = build_optimizer(projectors, 1e-3, 0.01)
    assert all(g["lr"] == 1e-3 and g["weight_decay"] == 0.01 for g in opt.param_groups)


def test_schedules_warm_up_then_follow_their_shape() -> None:
    for name, last_at_end in (("linear", 0.0), ("cosine", 0.0), ("constant", 1.0)):
        opt = build_optimizer(_projectors(), 1.0, 0.0)
        sched = build_scheduler(opt, name, total_steps=10, warmup_ratio=0.2)
        lrs = []
        for _ in range(10):
            lrs.append(sched.get_last_lr()[0])
            opt.step()
            sched.step()
        assert lrs[0] == 0.0 and lrs[1] == pytest.approx(0.5) and lrs[2] == pytest.approx(1.0), (name, lrs)
        assert sched.get_last_lr()[0] == pytest.approx(last_at_end, abs=1e-9), name


def test_total_steps() -> None:
    assert total_optimizer_steps(16, 4, 1, 1, None) == 4
    assert total_optimizer_steps(17, 4, 2, 3, None) == math.ceil(5 * 3 / 2)
    assert total_optimizer_steps(17, 4, 2, 3, 7) == 7


def test_explicit_anneal_steps_reach_the_final_temperature_then_stay(tmp_path, section) -> None:
    train = section(optim={"max_steps": 6})
    train["projector"].update(anneal_steps=3, initial_temperature=1.0, final_temperature=0.01)
    spec = TrainSpec(receiver="tiny:qwen3", sharer="tiny:qwen2", train=from_json(TrainConfig, train))
    Trainer(spec, tmp_path).train(progress=False)
    temps = [json.loads(x)["gate_temperature"] for x in (tmp_path / "diagnostics.jsonl").read_text().splitlines()]
    expected = [0.01 ** min(s / 3, 1.0) for s in range(1, 7)]  # T0 * (T1/T0) ** min(step/anneal, 1), §2
    assert temps == pytest.approx(expected, rel=1e-5)
    recipe = json.loads((tmp_path / "config.json").read_text())
    assert recipe["model"]["projector"]["params"]["anneal_steps"] == 3
