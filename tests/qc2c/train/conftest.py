"""Shared helpers of the training tests: .venv/bin/python -m pytest tests/qc2c/train -q"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).resolve().parents[2] / "data" / "train"
ECHO = DATA / "synthetic_echo.jsonl"


def train_section(**over: Any) -> dict[str, Any]:
    """A tiny, fast training setup: small projectors, no dropout, constant lr (a learnable echo task)."""
    optim = {
        "lr": 3e-3,
        "batch_size": 4,
        "grad_accum": 1,
        "max_steps": 12,
        "warmup_ratio": 0.0,
        "scheduler": "constant",
    }
    optim.update(over.pop("optim", {}))
    section = {
        "data": {"jsonl": str(ECHO), "max_length": 256},
        "projector": {"hidden_dim": 32, "intermediate_dim": 32, "dropout": 0.0},
        "optim": optim,
        "save_steps": 4,
    }
    section.update(over)
    return section


@pytest.fixture
def echo() -> Path:
    return ECHO


@pytest.fixture
def section():
    return train_section
