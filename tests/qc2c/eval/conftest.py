"""Tiny-model fixtures shared by the evaluation tests (built offline, loaded once per session)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_pair():
    """tiny:qwen3 (receiver) ← tiny:qwen2 (sharer): one tokenizer, no alignment; float32 on CPU."""
    from qc2c.models.pair import load_pair

    return load_pair("tiny:qwen3", "tiny:qwen2", dtype=torch.float32, device="cpu")


@pytest.fixture(scope="session")
def tiny_fuser():
    from qc2c.fuser.sources import load_fuser

    return load_fuser("tiny:qwen3+qwen2")
