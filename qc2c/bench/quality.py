"""Quantizer quality: MSE of each scheme and asymmetric convention on synthetic KV, for the codec bench.

Three data kinds, each a seeded (R, L, H, n, D) float32 tensor, chosen because the two asymmetric
conventions (qc2c.kv.schemes.uniform) rank differently on them:
- ``normal``: i.i.d. N(0, 1);
- ``heavy_tailed``: zero-mean Student-t with 3 degrees of freedom (rare large values in every channel), where the
  observer convention's exact 0 helps;
- ``fixed_sign``: N(0, 1) with one channel in eight replaced by a fixed-sign offset channel, ±(10 + N(0, 1)) —
  the key channels KIVI (arXiv:2402.02750) quantizes per channel, where kivi's full-range levels help.

MSE is measured through the whole codec (keys per channel, values per token, `kv.quant` defaults otherwise),
on the cache dtype the bench uses, against the input as float32, for keys and values apart: the same data
is grouped per channel for keys (an outlier channel is a group of its own) and per token for values (an
outlier channel shares each group with ordinary ones), and the two conventions rank differently there.
"""

from __future__ import annotations

import torch
from torch import Tensor

from qc2c.config import KVConfig, QuantConfig
from qc2c.fuser.seam import SectionKV
from qc2c.kv.codec import build_codec
from qc2c.kv.quant import SCHEMES
from qc2c.kv.schemes.base import CONVENTIONS
from qc2c.kv.schemes.uniform import UniformInt

DATA_KINDS = ("normal", "heavy_tailed", "fixed_sign")


def synthetic_kv(kind: str, shape: tuple[int, ...], seed: int) -> Tensor:
    """A seeded float32 tensor of `shape` (last axis = channels) of one of DATA_KINDS."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen)
    if kind == "heavy_tailed":
        chi2 = torch.randn((3, *shape), generator=gen).pow(2).sum(0)
        return x / (chi2 / 3).sqrt()
    if kind == "fixed_sign":
        channels = torch.arange(0, shape[-1], 8)
        sign = torch.where(torch.arange(channels.numel()) % 2 == 0, 1.0, -1.0)
        x[..., channels] = sign * (10.0 + x[..., channels])
        return x
    if kind != "normal":
        raise ValueError(f"kind: unknown data kind {kind!r} (allowed: {', '.join(DATA_KINDS)})")
    return x


def settings(schemes: list[str]) -> list[tuple[str, str]]:
    """(scheme, convention) rows: each asymmetric int scheme once per convention; others once, convention '—'."""
    rows = []
    for name in schemes:
        uniform = issubclass(SCHEMES.get(name), UniformInt)
        rows += [(name, c) for c in CONVENTIONS] if uniform else [(name, "—")]
    return rows


def measure_quality(
    schemes: list[str], shape: tuple[int, int, int, int, int], dtype: torch.dtype, seed: int = 0
) -> list[dict]:
    """One row per (scheme, convention): {"scheme", "convention", "mse": {kind: {"keys": MSE, "values": MSE}}}.

    shape = (batch, layers, heads, tokens, head_dim); the same tensors are used for every row.
    """
    b, n_layers, n_heads, n_tokens, head_dim = shape
    data = {}
    for i, kind in enumerate(DATA_KINDS):
        k = synthetic_kv(kind, (n_layers, b, n_heads, n_tokens, head_dim), seed + 2 * i).to(dtype)
        v = synthetic_kv(kind, (n_layers, b, n_heads, n_tokens, head_dim), seed + 2 * i + 1).to(dtype)
        data[kind] = [(k[layer], v[layer]) for layer in range(n_layers)]
    mask = torch.ones(b, n_tokens, dtype=torch.bool)
    layer_map = {t: t for t in range(n_layers)}
    rows = []
    for name, convention in settings(schemes):
        quant = QuantConfig(scheme=name) if convention == "—" else QuantConfig(scheme=name, convention=convention)
        codec = build_codec(
            KVConfig(quant=quant), layer_map=layer_map, n_sharer_layers=n_layers, n_receiver_layers=n_layers
        )
        mse = {}
        for kind, sharer in data.items():
            section = SectionKV(sharer=sharer, receiver=[], fuse_mask=mask, layer_map=layer_map, project=None)  # type: ignore[arg-type]
            messages, _, _ = codec.encode(section)
            decoded, _ = codec.decode(messages, dtype=dtype, device=torch.device("cpu"))
            mse[kind] = {
                half: float(
                    torch.stack([(d[h].float() - s[h].float()).pow(2).mean() for d, s in zip(decoded, sharer)]).mean()
                )
                for h, half in enumerate(("keys", "values"))
            }
        rows.append({"scheme": name, "convention": convention, "mse": mse})
    return rows
