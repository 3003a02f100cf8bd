"""Shared hypothesis strategies and seeded tensor builders for the kv tests (parameters drawn, not elements)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from hypothesis import settings
from hypothesis import strategies as st

from qc2c.bench.quality import synthetic_kv
from qc2c.kv.grouping import AXES
from qc2c.kv.quant import Scheme, build_scheme
from qc2c.kv.schemes.base import CONVENTIONS

# tests parametrized over every family member run a quarter of the profile's examples each
PER_MEMBER = settings(max_examples=max(10, settings.default.max_examples // 4))
KINDS = ("normal", "outliers", "constant", "zeros", "tiny", "huge", "heavy_tailed", "fixed_sign")


@dataclass(frozen=True)
class Case:
    shape: tuple[int, int, int, int, int]  # (R, L, H, T, D)
    axis: str
    group_size: int | None
    symmetric: bool
    scale_dtype: str
    kind: str
    seed: int
    convention: str = "kivi"


def case_scheme(name: str, case: Case) -> Scheme:
    """Scheme `name` with the case's grouping, symmetry, scale dtype and convention."""
    return build_scheme(
        name,
        axis=case.axis,
        group_size=case.group_size,
        symmetric=case.symmetric,
        scale_dtype=case.scale_dtype,
        convention=case.convention,
    )


def build_tensor(shape: tuple[int, ...], kind: str, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A seeded tensor of the given distribution kind; `outliers` scales 2 fixed channels by 50 (KIVI's keys);
    `heavy_tailed` and `fixed_sign` are the codec quality bench's kinds (qc2c.bench.quality)."""
    if kind in ("heavy_tailed", "fixed_sign"):
        return synthetic_kv(kind, shape, seed).to(dtype)
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
        convention=draw(st.sampled_from(CONVENTIONS)),
    )


def build_section(
    b: int,
    n_layers: int,
    n_heads: int,
    n: int,
    head_dim: int,
    seed: int,
    *,
    n_pad: int = 0,
    dtype: torch.dtype = torch.float32,
    n_receiver_layers: int | None = None,
    attention: bool = False,
):
    """A seeded SectionKV: row 0 left-padded by n_pad; receiver = 2 heads × 8; project = fixed linear maps."""
    from qc2c.fuser.seam import SectionKV

    gen = torch.Generator().manual_seed(seed)
    shape = (b, n_heads, n, head_dim)
    sharer = [
        (torch.randn(shape, generator=gen).to(dtype), torch.randn(shape, generator=gen).to(dtype))
        for _ in range(n_layers)
    ]
    n_receiver_layers = n_receiver_layers or n_layers
    receiver = [
        (torch.randn(b, 2, n, 8, generator=gen).to(dtype), torch.randn(b, 2, n, 8, generator=gen).to(dtype))
        for _ in range(n_receiver_layers)
    ]
    weights = [torch.randn(n_heads * head_dim, 16, generator=gen) / head_dim for _ in range(n_receiver_layers)]

    def project(t, sharer_kv, receiver_kv):
        out = []
        for s, r in zip(sharer_kv, receiver_kv):
            flat = s.float().permute(0, 2, 1, 3).reshape(b, n, -1) @ weights[t]
            out.append((r.float() + flat.view(b, n, 2, 8).permute(0, 2, 1, 3)).to(dtype))
        return tuple(out)

    mask = torch.ones(b, n, dtype=torch.bool)
    mask[0, :n_pad] = False
    layer_map = {t: t * n_layers // n_receiver_layers for t in range(n_receiver_layers)}
    attn = None
    if attention:
        causal = torch.ones(n, n, dtype=torch.bool).tril()
        attn = [
            torch.randn(b, 2 * n_heads, n, n, generator=gen).masked_fill(~causal, -torch.inf).softmax(-1)
            for _ in range(n_layers)
        ]
    return SectionKV(
        sharer=sharer, receiver=receiver, fuse_mask=mask, layer_map=layer_map, project=project, sharer_attention=attn
    )


def row_alone(section, r: int, start: int):
    """Row r of `section` as the one-row section it would be on its own: its columns from `start` on (the
    columns before are its batch's left padding). Projections are per token, so `project` runs the batch's own
    projection on the row put back in place."""
    from qc2c.fuser.seam import SectionKV

    def cut(x):
        return x[r : r + 1, ..., start:, :]

    def project(t, sharer_kv, receiver_kv):
        full = []
        for alone, like in zip((*sharer_kv, *receiver_kv), (*section.sharer[0], *section.receiver[t])):
            padded = torch.zeros_like(like)
            padded[r : r + 1, ..., start:, :] = alone
            full.append(padded)
        return tuple(cut(x) for x in section.project(t, tuple(full[:2]), tuple(full[2:])))

    attn = (
        None
        if section.sharer_attention is None
        else [a[r : r + 1, :, start:, start:] for a in section.sharer_attention]
    )
    return SectionKV(
        sharer=[(cut(k), cut(v)) for k, v in section.sharer],
        receiver=[(cut(k), cut(v)) for k, v in section.receiver],
        fuse_mask=section.fuse_mask[r : r + 1, start:],
        layer_map=section.layer_map,
        project=project,
        sharer_attention=attn,
    )
