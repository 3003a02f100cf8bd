"""Quantization schemes: the `SCHEMES` family and how a manifest's `kv.quant` becomes Scheme objects.

Members (names are the public names): fp16 bf16 (reference precisions), fp32 (lossless reference for
float32 runtimes), int8 int4 int2 (uniform; symmetric absmax, or asymmetric min/max in the `kivi` or
`observer` convention, see qc2c.kv.schemes.uniform), nf4 (bitsandbytes'
codebook × absmax), fp8_e4m3 fp8_e5m2 (scaled torch float8). Implementations live in `qc2c.kv.schemes`.
Keys and values are configured separately (`key_axis`, `value_axis`): KIVI (arXiv:2402.02750) puts key
scales per channel, value scales per token.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qc2c.kv.grouping import Grouping
from qc2c.kv.schemes import floats, fp8, nf4, uniform  # noqa: F401  (registers the members)
from qc2c.kv.schemes.base import CONVENTIONS, SCALE_DTYPES, SCHEMES, Encoded, NonFiniteInput, Scheme, pack, unpack

__all__ = [
    "CONVENTIONS", "SCHEMES", "Encoded", "NonFiniteInput", "Scheme", "build_scheme", "build_kv_schemes",
    "convention_applies", "pack", "unpack",
]  # fmt: skip


def build_scheme(
    name: str,
    *,
    axis: str = "token",
    group_size: int | None = None,
    symmetric: bool = False,
    scale_dtype: str = "float16",
    convention: str = "kivi",
) -> Scheme:
    """A configured scheme by public name; unknown names raise `UnknownPlugin` with a suggestion."""
    cls = SCHEMES.get(name)
    if scale_dtype not in SCALE_DTYPES:
        raise ValueError(f"scale_dtype: {scale_dtype!r} is not allowed (allowed: {', '.join(SCALE_DTYPES)})")
    if convention not in CONVENTIONS:
        raise ValueError(f"convention: {convention!r} is not allowed (allowed: {', '.join(CONVENTIONS)})")
    return cls(grouping=Grouping(axis, group_size), symmetric=bool(symmetric), scale_dtype=SCALE_DTYPES[scale_dtype],
               convention=convention)  # fmt: skip


def build_kv_schemes(name: str, quant: Mapping[str, Any]) -> tuple[Scheme, Scheme]:
    """(key scheme, value scheme) for scheme `name` with the grouping settings of a manifest `kv.quant` dict."""
    common = {
        "group_size": quant.get("group_size", 64),
        "symmetric": quant.get("symmetric", False),
        "scale_dtype": quant.get("scale_dtype", "float16"),
        "convention": quant.get("convention", "kivi"),
    }
    key = build_scheme(name, axis=quant.get("key_axis", "channel"), **common)
    value = build_scheme(name, axis=quant.get("value_axis", "token"), **common)
    return key, value


def convention_applies(kv: Mapping[str, Any]) -> bool:
    """Whether `kv.quant.convention` changes any number of a manifest `kv` dict: some asymmetric int8/int4/int2
    is sent (kv.quant.scheme or kv.precision.default, an override, or a budget candidate)."""
    quant, precision = kv.get("quant") or {}, kv.get("precision") or {}
    if quant.get("symmetric", False):
        return False
    names = {precision.get("default") or quant.get("scheme", "int8")}
    names |= {override.get("scheme") for override in precision.get("overrides") or ()}
    names |= set((kv.get("budget") or {}).get("candidates") or ())
    return any(name in SCHEMES and issubclass(SCHEMES.get(name), uniform.UniformInt) for name in names)
