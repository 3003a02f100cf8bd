"""Preflight: every kind of pair <-> fuser mismatch is refused with a message saying what to do.

Run: .venv/bin/python -m pytest tests/qc2c/fuser/test_preflight.py -q
"""

from __future__ import annotations

import copy

import pytest
from transformers import AutoConfig, AutoTokenizer

from qc2c import C2CModel, load_fuser
from qc2c.fuser.preflight import IncompatibleFuser, check_compatible, model_key
from qc2c.models.tiny import resolve_tiny

NAMES = ("tiny:qwen3", "tiny:qwen2")


@pytest.fixture(scope="module")
def parts():
    dirs = {n: resolve_tiny(f"tiny:{n}") for n in ("qwen3", "qwen2", "llama")}
    configs = {n: AutoConfig.from_pretrained(d) for n, d in dirs.items()}
    toks = {n: AutoTokenizer.from_pretrained(d) for n, d in dirs.items()}
    return load_fuser("tiny:qwen3+qwen2"), configs, toks


def check(parts, *, receiver=None, sharer=None, fuser=None, alignment=None, names=NAMES, toks=("qwen3", "qwen2")):
    f, configs, tokenizers = parts
    return check_compatible(
        fuser or f,
        receiver or configs["qwen3"],
        sharer or configs["qwen2"],
        (tokenizers[toks[0]], tokenizers[toks[1]]),
        alignment=alignment,
        names=names,
    )


def with_(config, **changes):
    config = copy.deepcopy(config)
    for k, v in changes.items():
        setattr(config, k, v)
    return config


def test_matching_pair_has_no_problems(parts):
    assert check(parts) == []


def test_layer_count(parts):
    (problem,) = check(parts, receiver=with_(parts[1]["qwen3"], num_hidden_layers=6))
    assert "layer count" in problem and "6" in problem and "m7_fuser_train.yaml" in problem


def test_sharer_layers_missing(parts):
    (problem,) = check(parts, sharer=with_(parts[1]["qwen2"], num_hidden_layers=2))
    assert "sharer layers [2] do not exist" in problem


@pytest.mark.parametrize(
    ("role", "changes", "expect"),
    [
        ("receiver", {"num_key_value_heads": 4}, "expects 2 receiver KV heads, the receiver has 4"),
        ("receiver", {"head_dim": 8}, "expects receiver head_dim 16, the receiver has 8"),
        ("sharer", {"num_key_value_heads": 1}, "expects 2 sharer KV heads, the sharer has 1"),
        ("sharer", {"head_dim": 6}, "expects sharer head_dim 12, the sharer has 6"),
    ],
)
def test_heads_and_head_dim(parts, role, changes, expect):
    kw = (
        {"receiver": with_(parts[1]["qwen3"], **changes)}
        if role == "receiver"
        else {"sharer": with_(parts[1]["qwen2"], **changes)}
    )
    problems = check(parts, **kw)
    assert any(expect in p for p in problems), problems


def test_different_tokenizers_without_alignment(parts):
    problems = check(parts, toks=("qwen3", "llama"))
    assert any("tokenizers differ" in p and "pair.alignment: first or longest" in p for p in problems)


def test_alignment_must_match_the_training(parts):
    aligned_fuser = load_fuser("tiny:qwen3+llama")
    problems = check(
        parts,
        fuser=aligned_fuser,
        sharer=parts[1]["llama"],
        toks=("qwen3", "llama"),
        names=("tiny:qwen3", "tiny:llama"),
    )
    assert any("trained with token alignment (longest)" in p for p in problems)
    assert any("trained without token alignment" in p for p in check(parts, alignment="first"))


def test_model_names_recorded_in_the_fuser(parts):
    (problem,) = check(parts, names=("tiny:qwen3", "Qwen/Qwen2.5-0.5B-Instruct"))
    assert "trained for sharer tiny:qwen2" in problem and "Qwen/Qwen2.5-0.5B-Instruct" in problem
    assert model_key("Qwen/Qwen3-0.6B") == model_key("/models/qwen3-0.6b/") == "qwen3-0.6b"


def test_from_pretrained_refuses_before_loading_models(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("models were loaded before the preflight")

    monkeypatch.setattr("qc2c.c2c.load_pair", boom)
    with pytest.raises(IncompatibleFuser) as e:
        C2CModel.from_pretrained("tiny:qwen3", "tiny:llama", "tiny:qwen3+qwen2", alignment="longest")
    assert len(e.value.problems) >= 3 and "does not fit this pair" in str(e.value)
