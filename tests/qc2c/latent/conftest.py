"""Shared fixtures: the two demo decoders (Qwen3 receiver, Llama with its own tokenizer), loaded once."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def decoders():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from qc2c.demo.zoo import resolve_demo_model

    out = {}
    for name in ("receiver", "sharer_llama"):
        path = resolve_demo_model(f"demo:{name}")
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval().requires_grad_(False)
        out[f"demo_{name}"] = (model, AutoTokenizer.from_pretrained(path))
    return out
