"""Contract every quantization scheme keeps, for every axis: `python -m pytest tests/qc2c/kv/test_scheme_contract.py -q`.

Iterates SCHEMES.names(), so a new scheme is tested without being listed here.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from kv_cases import PER_MEMBER, Case, build_tensor, case_scheme, cases

from qc2c.kv.quant import SCHEMES, NonFiniteInput, Scheme, build_scheme, unpack
from qc2c.kv.schemes.floats import RawFloat
from qc2c.kv.schemes.fp8 import ScaledFloat8
from qc2c.kv.schemes.nf4 import NF4, NF4_MAX_GAP
from qc2c.kv.schemes.uniform import UniformInt


def _scheme(name: str, case: Case) -> Scheme:
    return case_scheme(name, case)


def per_element(scheme: Scheme, stored: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-group values stored as raw scale-dtype bytes (scales, kivi mins), broadcast to x's shape (R, L, H, T, D)."""
    xg, dim, unview = scheme.grouping.view(x)
    stat = list(xg.shape)
    stat[dim] = 1
    values = stored.view(scheme.scale_dtype).float().view(stat)
    return unview(values.expand_as(xg).contiguous())


def kivi_rounding(scheme: UniformInt, enc, x: torch.Tensor) -> torch.Tensor:
    """What rounding the stored min and scale to nearest can add to kivi's s/2, per element: |min − stored min|
    (values below it clamp to code 0) + |range − qmax · stored s| (values above the top level clamp to qmax)."""
    xg, dim, unview = scheme.grouping.view(x.float())
    lo, hi = xg.amin(dim, keepdim=True), xg.amax(dim, keepdim=True)
    stored_min = per_element(scheme, enc.zeros, x)
    scale = per_element(scheme, enc.scales, x)
    lo, hi = (unview(t.expand_as(xg).contiguous()) for t in (lo, hi))
    return (lo - stored_min).abs() + (hi - lo - ((1 << scheme.bits) - 1) * scale).abs()


def error_bound(scheme: Scheme, enc, x: torch.Tensor) -> torch.Tensor:
    """Per element: the scheme's documented worst case, plus float32 rounding slack."""
    slack = 1e-6 * x.abs() + 1e-30
    if isinstance(scheme, RawFloat):
        fmt = torch.finfo(scheme.float_dtype)
        return fmt.eps / 2 * x.abs() + fmt.smallest_normal * fmt.eps / 2 + slack
    scale = per_element(scheme, enc.scales, x)
    if isinstance(scheme, UniformInt):
        extra = kivi_rounding(scheme, enc, x) if scheme.kivi else 0.0
        return scale / 2 * (1 + 1e-6) + extra + slack
    if isinstance(scheme, NF4):
        return scale * NF4_MAX_GAP / 2 * (1 + 1e-6) + slack
    assert isinstance(scheme, ScaledFloat8)
    fmt = torch.finfo(scheme.fp8_dtype)
    return (fmt.eps / 2) * x.abs() * (1 + 1e-6) + fmt.smallest_normal * fmt.eps / 2 * scale + slack


@pytest.mark.parametrize("name", SCHEMES.names())
@PER_MEMBER
@given(case=cases())
def test_decode_is_within_the_scheme_error_bound(name: str, case: Case) -> None:
    scheme = _scheme(name, case)
    x = build_tensor(case.shape, case.kind, case.seed)
    enc = scheme.encode(x)
    y = scheme.decode(enc, torch.float32)
    assert y.shape == x.shape and bool(torch.isfinite(y).all())
    err = (y - x).abs()
    bound = error_bound(scheme, enc, x)
    worst = (err - bound).max()
    assert worst <= 0, f"{name} {case}: error exceeds bound by {float(worst):.3g}"


@pytest.mark.parametrize("name", SCHEMES.names())
@PER_MEMBER
@given(case=cases())
def test_packed_sizes_equal_the_closed_form_and_codes_are_in_range(name: str, case: Case) -> None:
    scheme = _scheme(name, case)
    enc = scheme.encode(build_tensor(case.shape, case.kind, case.seed))
    sizes = scheme.nbytes(case.shape[1:])
    r = case.shape[0]
    assert enc.payload.shape == (r, sizes["payload"])
    assert enc.scales.shape[1] + enc.zeros.shape[1] == sizes["scales"]
    assert enc.payload.dtype == enc.scales.dtype == enc.zeros.dtype == torch.uint8
    if isinstance(scheme, (UniformInt, NF4)):
        n = math.prod(case.shape[1:])
        codes = unpack(enc.payload, scheme.bits, n)
        lowest = 1 if isinstance(scheme, UniformInt) and scheme.symmetric else 0
        assert int(codes.min()) >= lowest and int(codes.max()) < 2**scheme.bits
        per = 8 // scheme.bits
        if n % per:  # the unused high bits of the last byte are zero
            assert int(enc.payload[:, -1].max()) >> ((n % per) * scheme.bits) == 0


@pytest.mark.parametrize("name", SCHEMES.names())
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@PER_MEMBER
@given(case=cases(kinds=("normal",), max_tokens=20))
def test_nan_and_inf_are_refused(name: str, bad: float, case: Case) -> None:
    x = build_tensor(case.shape, case.kind, case.seed)
    x.view(-1)[case.seed % x.numel()] = bad
    with pytest.raises(NonFiniteInput, match="NaN or Inf"):
        _scheme(name, case).encode(x)


@pytest.mark.parametrize("name", SCHEMES.names())
@pytest.mark.parametrize("kind", ["zeros", "constant"])
def test_zero_and_constant_inputs_decode_finite_and_close(name: str, kind: str) -> None:
    for axis in ("token", "channel", "head", "layer", "tensor"):
        scheme = build_scheme(name, axis=axis, group_size=4)
        x = build_tensor((2, 2, 2, 9, 6), kind, seed=3)
        enc = scheme.encode(x)
        y = scheme.decode(enc, torch.float32)
        assert bool(torch.isfinite(y).all())
        assert bool(((y - x).abs() <= error_bound(scheme, enc, x)).all()), f"{name} {axis} {kind}"
