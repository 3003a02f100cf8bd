"""Per-group gradient norms: every parameter in one group, the weight branch no longer reads 0.
.venv/bin/python -m pytest tests/qc2c/train/test_diagnostics.py -q"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qc2c.fuser.projector import C2CProjector
from qc2c.train.diagnostics import grad_norms, norm_group_of


def test_group_norms_cover_every_gradient_and_the_weight_branch_has_one() -> None:
    torch.manual_seed(0)
    projectors = nn.ModuleList([C2CProjector(4, 4, hidden_dim=8, intermediate_dim=8) for _ in range(2)])
    src, tgt = torch.randn(2, 1, 5, 4), torch.randn(2, 1, 5, 4)
    sum(k.sum() + v.sum() for k, v in (p((src, src), (tgt, tgt)) for p in projectors)).backward()
    norms = grad_norms(projectors)
    per_param = {n: float(p.grad.pow(2).sum()) for n, p in projectors.named_parameters()}
    for group in ("gate", "weight", "other"):
        expected = sum(v for n, v in per_param.items() if norm_group_of(n) == group) ** 0.5
        assert norms[group] == pytest.approx(expected) and norms[group] > 0, group
    assert norms["total"] == pytest.approx(sum(per_param.values()) ** 0.5)
    assert {norm_group_of(n) for n in per_param if "scalar" in n} == {"weight"}
