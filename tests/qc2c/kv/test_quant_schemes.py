"""Scheme-specific behaviour: `python -m pytest tests/qc2c/kv/test_quant_schemes.py -q -s` (-s shows measured ratios)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from kv_cases import Case, build_tensor, cases

from qc2c.config import QuantConfig
from qc2c.kv.quant import SCHEMES, build_kv_schemes, build_scheme
from qc2c.kv.schemes.nf4 import NF4_LEVELS
from qc2c.plugins import UnknownPlugin


@pytest.mark.parametrize("name, dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16), ("fp32", torch.float32)])
@given(case=cases(kinds=("normal", "outliers", "tiny", "huge", "zeros")))
def test_float_schemes_are_bit_exact_on_representable_input(name: str, dtype: torch.dtype, case: Case) -> None:
    x = build_tensor(case.shape, case.kind, case.seed, dtype=dtype)
    scheme = build_scheme(name, axis=case.axis, group_size=case.group_size)
    y = scheme.decode(scheme.encode(x.float()), dtype)
    assert torch.equal(
        y.view(torch.int16 if dtype != torch.float32 else torch.int32),
        x.view(torch.int16 if dtype != torch.float32 else torch.int32),
    )


def test_fp16_refuses_values_beyond_its_range() -> None:
    with pytest.raises(ValueError, match="NaN or Inf"):
        build_scheme("fp16").encode(torch.full((1, 1, 1, 2, 2), 1e6))


def test_nf4_reproduces_its_codebook_levels_exactly() -> None:
    levels = torch.tensor(NF4_LEVELS).view(1, 1, 1, 1, 16)
    scheme = build_scheme("nf4", axis="token", group_size=16, scale_dtype="float32")
    assert torch.equal(scheme.decode(scheme.encode(levels), torch.float32), levels)


@pytest.mark.parametrize("bits_scheme", ["int8", "int4"])
def test_per_channel_keys_beat_per_token_keys_with_outlier_channels(bits_scheme: str) -> None:
    """KIVI's observation (docs/kv-compression.md §4): key outliers live in fixed channels, so per-token
    scales are set by the outliers and crush every other channel; per-channel scales keep them apart."""
    x = build_tensor((1, 4, 2, 256, 64), "normal", seed=0)
    outliers = [3, 17, 40, 51]  # 4 outlier channels, as in the spec's synthetic check
    x[..., outliers] *= 30.0
    normal = [c for c in range(64) if c not in outliers]
    rmse = {}
    for axis in ("channel", "token"):
        scheme = build_scheme(bits_scheme, axis=axis, group_size=64)
        err = scheme.decode(scheme.encode(x), torch.float32) - x
        rmse[axis] = (float(err.pow(2).mean().sqrt()), float(err[..., normal].pow(2).mean().sqrt()))
    overall = rmse["token"][0] / rmse["channel"][0]
    on_normal = rmse["token"][1] / rmse["channel"][1]
    print(
        f"\n{bits_scheme}: per-token / per-channel RMSE = {overall:.1f}× overall, {on_normal:.1f}× on normal channels"
    )
    assert overall > 1.0 and on_normal > 5.0


def test_unknown_scheme_suggests_the_closest_name() -> None:
    with pytest.raises(UnknownPlugin, match=r"unknown quantization scheme 'int3' \(did you mean 'int\d'"):
        build_scheme("int3")


def test_bad_grouping_settings_are_refused_with_the_field_name() -> None:
    with pytest.raises(ValueError, match="axis: unknown axis 'rows'"):
        build_scheme("int8", axis="rows")
    with pytest.raises(ValueError, match="group_size"):
        build_scheme("int8", group_size=0)
    with pytest.raises(ValueError, match="scale_dtype"):
        build_scheme("int8", scale_dtype="float64")


def test_keys_and_values_take_their_own_axes() -> None:
    key, value = build_kv_schemes("int4", QuantConfig(key_axis="channel", value_axis="token", group_size=32))
    assert (key.grouping.axis, value.grouping.axis) == ("channel", "token")
    assert key.grouping.group_size == value.grouping.group_size == 32


def test_the_manifest_scheme_names_are_registered() -> None:
    """docs/manifest.md lists these for kv.quant.scheme; fp32 is the lossless addition to C2C's precisions."""
    assert set(SCHEMES.names()) == {"fp16", "bf16", "int8", "int4", "int2", "nf4", "fp8_e4m3", "fp8_e5m2", "fp32"}
