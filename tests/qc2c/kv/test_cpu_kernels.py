"""Fused CPU int kernels give the eager path's bytes: `python -m pytest tests/qc2c/kv/test_cpu_kernels.py -q`.

Each case encodes the same tensor twice, once with QC2C_KV_KERNELS=eager and once with the kernels required,
and compares payload, scale bytes, offsets (observer zero points, kivi mins) and the decoded tensor bit for bit (NaN-free inputs, so
torch.equal is exact equality). Skipped, with the build error as reason, where the extension cannot be built.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from kernel_cases import DTYPES, assert_refused_alike, built, in_mode  # noqa: F401  (built: the module fixture)
from kv_cases import KINDS, build_tensor

from qc2c.kv.kernels import cpu as kernels
from qc2c.kv.quant import build_scheme
from qc2c.kv.schemes.base import CONVENTIONS, Encoded


def _run(mode: str, scheme, x: torch.Tensor, out_dtype: torch.dtype) -> tuple[Encoded, torch.Tensor]:
    def round_trip() -> tuple[Encoded, torch.Tensor]:
        enc = scheme.encode(x)
        return enc, scheme.decode(enc, out_dtype)

    return in_mode(mode, round_trip)


def assert_same(
    name: str,
    x: torch.Tensor,
    *,
    axis: str,
    group_size: int | None,
    symmetric: bool,
    scale_dtype: str,
    out_dtype: torch.dtype | None = None,
    convention: str = "kivi",
) -> None:
    scheme = build_scheme(
        name, axis=axis, group_size=group_size, symmetric=symmetric, scale_dtype=scale_dtype, convention=convention
    )
    out_dtype = out_dtype or x.dtype
    ref, ref_y = _run("eager", scheme, x, out_dtype)
    enc, y = _run("cpu", scheme, x, out_dtype)
    for field in ("payload", "scales", "zeros"):
        a, b = getattr(enc, field), getattr(ref, field)
        assert a.dtype == b.dtype == torch.uint8 and a.shape == b.shape, field
        assert torch.equal(a, b), f"{field} differs at {(a != b).nonzero()[:5].tolist()}"
    assert enc.shape == ref.shape
    assert y.dtype == ref_y.dtype and y.shape == ref_y.shape
    assert torch.equal(y, ref_y), f"decoded differs at {(y != ref_y).nonzero()[:5].tolist()}"


@given(
    name=st.sampled_from(("int8", "int4", "int2")),
    shape=st.tuples(st.integers(1, 3), st.integers(1, 2), st.integers(1, 2), st.integers(1, 40), st.integers(1, 72)),
    axis=st.sampled_from(("token", "channel")),
    group_size=st.one_of(st.none(), st.integers(1, 24)),
    symmetric=st.booleans(),
    scale_dtype=st.sampled_from(("float16", "float32")),
    kind=st.sampled_from(KINDS),
    dtype=st.sampled_from(tuple(DTYPES)),
    seed=st.integers(0, 2**16),
    convention=st.sampled_from(CONVENTIONS),
)
def test_kernels_equal_eager(name, shape, axis, group_size, symmetric, scale_dtype, kind, dtype, seed, convention):
    x = build_tensor(shape, kind, seed, DTYPES[dtype])
    assert_same(
        name, x, axis=axis, group_size=group_size, symmetric=symmetric, scale_dtype=scale_dtype, convention=convention
    )


@pytest.mark.parametrize("name", ["int8", "int4", "int2"])
@pytest.mark.parametrize("axis", ["token", "channel"])
@pytest.mark.parametrize(("symmetric", "convention"), [(False, "kivi"), (False, "observer"), (True, "kivi")])
def test_kernels_equal_eager_on_a_cache_shape(name: str, axis: str, symmetric: bool, convention: str) -> None:
    """Whole-byte rows (D = 64) and the SIMD loops; channel groups of 64 tokens with a ragged last one."""
    x = build_tensor((3, 4, 2, 100, 64), "outliers", seed=11).half()
    assert_same(name, x, axis=axis, group_size=64, symmetric=symmetric, scale_dtype="float16", convention=convention)


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_decode_into_another_dtype_equals_eager(convention: str) -> None:
    x = build_tensor((2, 2, 2, 33, 24), "normal", seed=3).half()
    for out_dtype in (torch.float32, torch.bfloat16):
        assert_same(
            "int4",
            x,
            axis="channel",
            group_size=8,
            symmetric=False,
            scale_dtype="float32",
            out_dtype=out_dtype,
            convention=convention,
        )


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("axis", ["token", "channel"])
def test_non_finite_input_is_refused_like_eager(bad: float, axis: str) -> None:
    x = build_tensor((1, 2, 1, 9, 16), "normal", seed=1)
    x[0, 1, 0, 4, 7] = bad
    assert_refused_alike(build_scheme("int4", axis=axis, group_size=4), x)


@pytest.mark.parametrize("name", ["int8", "int4", "int2"])
@pytest.mark.parametrize("axis", ["token", "channel"])
@pytest.mark.parametrize(("head_dim", "group_size"), [(40, 8), (72, 24), (96, 32), (96, None), (64, 40)])
def test_kernels_equal_eager_on_whole_byte_groups(name: str, axis: str, head_dim: int, group_size: int | None) -> None:
    """Groups and rows in multiples of 8 (the in-register paths): tails of 8, 16 and 24 codes, group counts
    that are not multiples of 8 in a block of rows, channel tails past the last 32."""
    for kind in ("outliers", "fixed_sign"):
        x = build_tensor((2, 3, 1, 13, head_dim), kind, seed=head_dim).half()
        for symmetric, convention in ((False, "kivi"), (False, "observer"), (True, "kivi")):
            assert_same(
                name,
                x,
                axis=axis,
                group_size=group_size,
                symmetric=symmetric,
                scale_dtype="float16",
                convention=convention,
            )


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("axis", ["token", "channel"])
@pytest.mark.parametrize("where", [(0, 0, 0, 0, 0), (0, 1, 0, 4, 7), (1, 2, 0, 12, 63)])
def test_non_finite_input_is_refused_like_eager_on_whole_byte_groups(bad: float, axis: str, where) -> None:
    x = build_tensor((2, 3, 1, 13, 64), "normal", seed=2)
    x[where] = bad
    for name, symmetric, convention in (("int8", True, "kivi"), ("int4", False, "observer"), ("int2", False, "kivi")):
        scheme = build_scheme(name, axis=axis, group_size=32, symmetric=symmetric, convention=convention)
        assert_refused_alike(scheme, x.half())


def test_scale_overflow_is_refused_like_eager() -> None:
    """float32 values near the float32 maximum: the fp16 scale overflows (the float32 one does not)."""
    x = torch.full((1, 1, 1, 4, 8), 3e38)
    x[..., 0] = -3e38
    for symmetric, scale_dtype in ((True, "float16"), (False, "float16"), (False, "float32")):
        for convention in CONVENTIONS:
            scheme = build_scheme(
                "int8", axis="token", symmetric=symmetric, scale_dtype=scale_dtype, convention=convention
            )
            assert_refused_alike(scheme, x)


@pytest.mark.parametrize("axis", ["token", "channel"])
def test_a_kivi_min_beyond_the_scale_dtype_is_refused_like_eager(axis: str) -> None:
    """A narrow group far from 0 (float32 cache): its scale fits float16, its min does not."""
    x = torch.full((1, 1, 1, 16, 16), 70000.0)
    x[..., 0, 0] = 70001.0
    assert_refused_alike(build_scheme("int4", axis=axis, group_size=8, convention="kivi"), x)


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown mode"):
        kernels.set_mode("gpu")


def test_unbuildable_kernels_fall_back_in_auto_and_fail_when_required(monkeypatch) -> None:
    """A build failure (here: recorded as if the compiler had failed) gives eager bytes in auto mode and a
    KernelUnavailable in cpu mode, never a silent difference."""
    x = build_tensor((1, 2, 1, 9, 16), "normal", seed=2).half()
    scheme = build_scheme("int4", axis="token", group_size=8)
    ref = _run("eager", scheme, x, torch.float16)
    monkeypatch.setattr(kernels, "_state", {"error": "fused CPU kernels cannot be built (test)"})
    kernels.set_mode("auto")
    try:
        enc = scheme.encode(x)
        assert "eager PyTorch" in (kernels.describe() or "")
        assert torch.equal(enc.payload, ref[0].payload) and torch.equal(scheme.decode(enc, torch.float16), ref[1])
        kernels.set_mode("cpu")
        with pytest.raises(kernels.KernelUnavailable, match="cannot be built"):
            scheme.encode(x)
    finally:
        kernels.set_mode(None)


@pytest.mark.parametrize("name", ["int8", "int4", "int2"])
@pytest.mark.parametrize("axis", ["token", "channel"])
@pytest.mark.parametrize("head_dim", [24, 30])
def test_layers_read_in_place_equal_eager_on_the_stack(name: str, axis: str, head_dim: int) -> None:
    """encode_layers on separate (R, H, n, D) layers (13 tokens: 8-row batches straddle heads and layers) gives
    the eager encode of their (R, L, H, n, D) stack, byte for byte."""
    gen = torch.Generator().manual_seed(7)
    layers = [torch.randn(3, 2, 13, head_dim, generator=gen).to(torch.float16) for _ in range(4)]
    for convention in CONVENTIONS:
        scheme = build_scheme(
            name, axis=axis, group_size=8, symmetric=False, scale_dtype="float16", convention=convention
        )
        ref, _ = _run("eager", scheme, torch.stack(layers, dim=1), torch.float16)
        kernels.set_mode("cpu")
        try:
            enc = scheme.encode_layers(layers)
        finally:
            kernels.set_mode(None)
        assert enc is not None and enc.shape == ref.shape
        for field in ("payload", "scales", "zeros"):
            assert torch.equal(getattr(enc, field), getattr(ref, field)), (convention, field)


def test_auto_mode_builds_only_for_a_cache_worth_the_build(monkeypatch) -> None:
    """On a machine without the build, auto mode keeps small tensors on the eager path (same bytes) and
    builds on the first tensor of AUTO_BUILD_MIN_ELEMENTS or more; an existing build is used for any size."""
    builds: list[int] = []

    def fake_load():
        builds.append(1)
        raise kernels.KernelUnavailable("fused CPU kernels cannot be built (test)")

    monkeypatch.setattr(kernels, "_state", {})
    monkeypatch.setattr(kernels, "load", fake_load)
    monkeypatch.setattr(kernels, "is_built", lambda: False)
    kernels.set_mode("auto")
    try:
        cpu = torch.device("cpu")
        assert not kernels.active(cpu, kernels.AUTO_BUILD_MIN_ELEMENTS - 1) and builds == []
        assert kernels.describe() is None, "no choice is logged before the first large cache"
        assert not kernels.active(cpu, kernels.AUTO_BUILD_MIN_ELEMENTS) and builds == [1]
        assert "eager PyTorch" in (kernels.describe() or "")
        monkeypatch.setattr(kernels, "load", lambda: kernels._state.setdefault("flags", "test flags"))
        monkeypatch.setattr(kernels, "is_built", lambda: True)
        kernels._state.pop("logged")
        assert kernels.active(cpu, 16) and "fused C++" in (kernels.describe() or "")
        kernels.set_mode("cpu")
        monkeypatch.setattr(kernels, "is_built", lambda: False)
        assert kernels.active(cpu, 16), "a required build is never deferred"
    finally:
        kernels.set_mode(None)


def test_is_built_finds_the_cached_extension() -> None:
    kernels.load()
    assert kernels.is_built()


def test_build_name_belongs_to_one_torch_installation() -> None:
    """Two venvs (two clones) compile against different include folders: each gets its own build name, so
    `is_built` never reports a build that loading would recompile."""
    source, flags = "int f();", ["-O3"]
    here = kernels.build_key(source, flags, "2.9.0", ["/a/.venv/torch/include", "/usr/include/python3.11"])
    assert here == kernels.build_key(source, flags, "2.9.0", ["/a/.venv/torch/include", "/usr/include/python3.11"])
    assert here != kernels.build_key(source, flags, "2.9.0", ["/b/.venv/torch/include", "/usr/include/python3.11"])
    assert here != kernels.build_key(source, flags, "2.9.1", ["/a/.venv/torch/include", "/usr/include/python3.11"])
    assert here != kernels.build_key(
        source + " ", flags, "2.9.0", ["/a/.venv/torch/include", "/usr/include/python3.11"]
    )
    assert here != kernels.build_key(
        source, [*flags, "-mavx2"], "2.9.0", ["/a/.venv/torch/include", "/usr/include/python3.11"]
    )
