"""Pair loading from the tiny zoo, local folders and the (offline) HF cache.

Run: .venv/bin/python -m pytest tests/qc2c/models/test_pair.py -q
"""

from __future__ import annotations

import pytest
import torch

from qc2c import load_pair
from qc2c.models.pair import ModelNotAvailable, resolve_model_dir
from qc2c.models.tiny import resolve_tiny


def test_tiny_pair_loads_in_eval_mode_with_sdpa_attention_unless_told():
    pair = load_pair("tiny:qwen3", "tiny:qwen2", dtype=torch.float32, device="cpu")
    assert type(pair.receiver).__name__ == "Qwen3ForCausalLM" and type(pair.sharer).__name__ == "Qwen2ForCausalLM"
    assert not pair.receiver.training and pair.receiver.config._attn_implementation == "sdpa"
    assert pair.sharer.config._attn_implementation == "sdpa"
    assert pair.same_tokenizer
    assert pair.receiver_path == resolve_tiny("tiny:qwen3")
    eager = load_pair("tiny:qwen3", "tiny:qwen2", attn_implementation="eager")
    assert eager.receiver.config._attn_implementation == eager.sharer.config._attn_implementation == "eager"


def test_local_folder_and_dtype():
    folder = str(resolve_tiny("tiny:llama"))
    pair = load_pair("tiny:qwen3", folder, dtype=torch.bfloat16, device="cpu")
    assert pair.sharer.dtype == torch.bfloat16 and pair.sharer_ref == folder
    assert not pair.same_tokenizer


def test_offline_cache_miss_says_how_to_prefetch(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(ModelNotAvailable) as e:
        resolve_model_dir("Qwen/Qwen3-0.6B", "main")
    assert "python -m qc2c.prefetch models Qwen/Qwen3-0.6B" in str(e.value) and "HF_HUB_OFFLINE" in str(e.value)


def test_bad_references_are_refused(tmp_path):
    with pytest.raises(ModelNotAvailable, match="no config.json"):
        resolve_model_dir(str(tmp_path), "main")
    with pytest.raises(ModelNotAvailable, match="no such model folder"):
        resolve_model_dir(str(tmp_path / "missing" / "x" / "y"), "main")


def test_conformance_fixture_folders_load(conformance):
    pair = load_pair(str(conformance / "fixtures/models/recv_qwen3"), str(conformance / "fixtures/models/sharer_llama"))
    assert pair.receiver.config.num_hidden_layers == 4 and pair.sharer.config.num_hidden_layers == 6
