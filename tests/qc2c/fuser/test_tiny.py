"""Tiny zoo fusers: deterministic, gates open, written and read through the real checkpoint path.

Run: .venv/bin/python -m pytest tests/qc2c/fuser/test_tiny.py -q
"""

from __future__ import annotations

import pytest

from qc2c.fuser.checkpoint import fuser_sha256
from qc2c.fuser.sources import load_fuser
from qc2c.fuser.tiny import UnknownTinyFuser, resolve_tiny_fuser, write_tiny_fuser


def test_same_ref_gives_the_same_bytes(tmp_path):
    a = write_tiny_fuser("tiny:qwen3+llama", tmp_path / "a")
    b = write_tiny_fuser("tiny:qwen3+llama", tmp_path / "b")
    assert fuser_sha256(a) == fuser_sha256(b)
    assert fuser_sha256(a) != fuser_sha256(write_tiny_fuser("tiny:qwen3+qwen2", tmp_path / "c"))


def test_loads_through_the_strict_loader_with_open_gates():
    fuser = load_fuser("tiny:qwen3+llama")
    assert fuser.root == resolve_tiny_fuser("tiny:qwen3+llama")
    assert fuser.layer_map == {0: 2, 1: 3, 2: 4, 3: 5}  # last_aligned 4 <- 6
    assert all(p.key_gate_logit.item() > 0 and p.value_gate_logit.item() > 0 for p in fuser.projectors)
    assert fuser.model_field("is_do_alignment") is True
    assert fuser.source == "tiny:qwen3+llama"


def test_unknown_tiny_fuser_is_refused():
    with pytest.raises(UnknownTinyFuser, match="tiny:qwen3\\+qwen2"):
        load_fuser("tiny:qwen3+gpt2")
