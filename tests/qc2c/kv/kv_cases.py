"""Shared hypothesis strategies and seeded tensor builders for the kv tests (parameters drawn, not elements)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from hypothesis import settings
from hypothesis import strategies as st

from qc2c.kv.grouping import AXES

# tests parametrized over every family member run a quarter of the profile's examples each
PER_MEMBER = settings(max_examples=max(10, settings.default.max_examples // 4))
KINDS = ("normal", "outliers", "constant", "zeros", "tiny", "huge")


@dataclass(frozen=True)
class Case:
    shape: tuple[int, int, int, int, int]  # (R, L, H, T, D)
    axis: str
    group_size: int | None
    symmetric: bool
    scale_dtype: str
    kind: str
    seed: int


def build_tensor(shape: tuple[int, ...], kind: str, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A seeded tensor of the given distribution kind; `outliers` scales 2 fixed channels by 50 (KIVI's keys)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen)
    if kind == "outliers":
        x[..., : max(1, shape[-1] // 8)] *= 50.0
    elif kind == "constant":
        x = torch.full(shape, float(torch.randn(1, generator=gen)) * 3)
    elif kind == "zeros":
        x = torch.zeros(shape)
    elif kind == "tiny":
        x = x * 1e-6
    elif kind == "huge":
        x = x * 1e4
    return x.to(dtype)


@st.composite
def cases(draw, kinds: tuple[str, ...] = KINDS, max_tokens: int = 70) -> Case:
    shape = (
        draw(st.integers(1, 2)),
        draw(st.integers(1, 3)),
        draw(st.integers(1, 2)),
        draw(st.integers(1, max_tokens)),
        draw(st.integers(1, 20)),
    )
    return Case(
        shape=shape,
        axis=draw(st.sampled_from(AXES)),
        group_size=draw(st.one_of(st.none(), st.integers(1, 40))),
        symmetric=draw(st.booleans()),
        scale_dtype=draw(st.sampled_from(("float16", "float32"))),
        kind=draw(st.sampled_from(kinds)),
        seed=draw(st.integers(0, 2**16)),
    )
