"""Quantization schemes: the `SCHEMES` family and how a manifest's `kv.quant` becomes Scheme objects.

Members (names are the public names): fp16 bf16 (reference precisions), fp32 (lossless reference for
float32 runtimes), int8 int4 int2 (uniform; symmetric absmax, or asymmetric min/max in the `kivi` or
`observer` convention, see qc2c.kv.schemes.uniform), nf4 (bitsandbytes'
codebook × absmax), fp8_e4m3 fp8_e5m2 (scaled torch float8). Implementations live in `qc2c.kv.schemes`.
Keys and values are configured separately (`key_axis`, `value_axis`): KIVI (arXiv:2402.02750) puts key
scales per channel, value scales per token.
"""

from __future__ import annotations

from qc2c.config import KVConfig, PrecisionConfig, QuantConfig
from qc2c.kv.grouping import Grouping
from qc2c.kv.schemes import floats, fp8, nf4, uniform  # noqa: F401  (registers the members)
from qc2c.kv.schemes.base import CONVENTIONS, SCALE_DTYPES, SCHEMES, Encoded, NonFiniteInput, Scheme, pack, unpack

__all__ = [
    "CONVENTIONS",
    "SCHEMES",
    "Encoded",
    "NonFiniteInput",
    "Scheme",
    "build_scheme",
    "build_kv_schemes",
    "convention_applies",
    "pack",
    "unpack",
]
_DEFAULT = QuantConfig()


def build_scheme(
    name: str,
    *,
    axis: str = _DEFAULT.value_axis,
    group_size: int | None = None,
    symmetric: bool = _DEFAULT.symmetric,
    scale_dtype: str = _DEFAULT.scale_dtype,
    convention: str = _DEFAULT.convention,
) -> Scheme:
    """A configured scheme by public name; unknown names raise `UnknownPlugin` with a suggestion. Defaults are
    `QuantConfig`'s, except `group_size`: None (one group per `axis` slice) unless given."""
    cls = SCHEMES.get(name)
    if scale_dtype not in SCALE_DTYPES:
        raise ValueError(f"scale_dtype: {scale_dtype!r} is not allowed (allowed: {', '.join(SCALE_DTYPES)})")
    if convention not in CONVENTIONS:
        raise ValueError(f"convention: {convention!r} is not allowed (allowed: {', '.join(CONVENTIONS)})")
    grouping = Grouping(axis, group_size)
    return cls(
        grouping=grouping, symmetric=bool(symmetric), scale_dtype=SCALE_DTYPES[scale_dtype], convention=convention
    )


def build_kv_schemes(name: str, quant: QuantConfig) -> tuple[Scheme, Scheme]:
    """(key scheme, value scheme) for scheme `name` with the grouping settings of `quant` (kv.quant)."""
    common = {
        "group_size": quant.group_size,
        "symmetric": quant.symmetric,
        "scale_dtype": quant.scale_dtype,
        "convention": quant.convention,
    }
    return build_scheme(name, axis=quant.key_axis, **common), build_scheme(name, axis=quant.value_axis, **common)


def convention_applies(kv: KVConfig) -> bool:
    """Whether `kv.quant.convention` changes any number: some asymmetric int8/int4/int2 is sent (kv.quant.scheme
    or kv.precision.default, an override, or a budget candidate)."""
    if kv.quant.symmetric:
        return False
    precision = kv.precision or PrecisionConfig()
    names = {precision.default or kv.quant.scheme}
    names |= {override.scheme for override in precision.overrides}
    names |= set(kv.budget.candidates if kv.budget else ())
    return any(name in SCHEMES and issubclass(SCHEMES.get(name), uniform.UniformInt) for name in names)
