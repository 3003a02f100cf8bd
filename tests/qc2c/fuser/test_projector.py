"""C2CProjector: parameter names, dtype promotion, gates, temperature. Run: .venv/bin/python -m pytest tests/qc2c/fuser/test_projector.py -q"""

from __future__ import annotations

import math

import torch

from qc2c.fuser.projector import C2CProjector


def make(dtype=torch.float32, layers=3) -> C2CProjector:
    torch.manual_seed(0)
    p = C2CProjector(12, 16, 2, 2, intermediate_dim=20, hidden_dim=24, num_layers=layers, dtype=dtype)
    for prm in p.parameters():
        torch.nn.init.normal_(prm, std=0.2)
    with torch.no_grad():
        p.key_gate_logit.fill_(1.0)
        p.value_gate_logit.fill_(-1.0)
    return p.eval()


def kv(b=2, h=2, n=5, d=12, dtype=torch.float32):
    return torch.randn(b, h, n, d).to(dtype), torch.randn(b, h, n, d).to(dtype)


def test_state_dict_has_exactly_the_published_keys():
    # §2: 33 entries for num_layers=3, names as in upstream rosetta/model/projector.py
    keys = set(C2CProjector(12, 16, 2, 2, num_layers=3, hidden_dim=8, intermediate_dim=8).state_dict())
    assert len(keys) == 33
    assert {"key_gate_logit", "value_gate_logit", "gate_temperature", "key_in.weight", "key_scalar_head.bias"} <= keys
    assert "key_proj_mlp2.blocks.0.norm.weight" in keys and "key_proj_mlp2.blocks.1.w1.weight" not in keys
    four = set(C2CProjector(12, 16, 2, 2, num_layers=4, hidden_dim=8, intermediate_dim=8).state_dict())
    assert "key_proj_mlp2.blocks.1.w2.weight" in four and len(four) == 33 + 6


def test_closed_gate_returns_target_and_open_gate_changes_it():
    p = make()
    src, tgt = kv(), kv(d=16)
    k, v = p(src, tgt)
    assert torch.equal(v, tgt[1])  # value gate logit -1 -> hard gate 0
    assert not torch.allclose(k, tgt[0])


def test_bf16_fused_term_is_float32_and_rounds_once():
    p = make(torch.bfloat16)
    src, tgt = kv(dtype=torch.bfloat16), kv(d=16, dtype=torch.bfloat16)
    k, _ = p(src, tgt)
    assert k.dtype == torch.float32  # gate is a float32 (1,1,1,1) tensor -> promotion
    # manual: the MLPs in bf16, then target + 1.0 * w * P in float32
    b, h, n, d = tgt[0].shape
    z = p.key_in(torch.cat([src[0].transpose(1, 2).reshape(b, n, -1), tgt[0].transpose(1, 2).reshape(b, n, -1)], -1))
    z = p.key_mlp1(z)
    proj = p.key_proj_out(p.key_proj_mlp2(z)).reshape(b, n, h, d).transpose(1, 2)
    w = torch.sigmoid(p.key_scalar_head(p.key_scalar_mlp2(z))).transpose(1, 2).unsqueeze(-1)
    manual = tgt[0].float() + w.float() * proj.float()
    assert torch.equal(k, manual)
    bf16_only = tgt[0] + w * proj  # what a 0-dim gate would give: differs somewhere
    assert not torch.equal(k.to(torch.bfloat16), bf16_only)


def test_training_gate_is_stochastic_and_temperature_anneals():
    p = make().train()
    assert p.gate("key", (2, 2, 5)).shape == (2, 2, 5, 1)
    p.update_temperature(0)
    assert math.isclose(p.gate_temperature.item(), 1.0)
    p.update_temperature(1929 // 2)
    assert math.isclose(p.gate_temperature.item(), 0.001 ** ((1929 // 2) / 1929), rel_tol=1e-5)
    p.update_temperature(10_000)
    assert math.isclose(p.gate_temperature.item(), 0.001, rel_tol=1e-5)


def test_num_layers_below_three_is_refused():
    try:
        C2CProjector(4, 4, num_layers=2)
    except ValueError as e:
        assert "num_layers" in str(e)
    else:
        raise AssertionError("num_layers=2 accepted")
