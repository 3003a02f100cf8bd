"""Fused CPU kernels of the float messages give the eager path's bytes: fp16/bf16/fp32, fp8 and nf4.

`python -m pytest tests/qc2c/kv/test_float_kernels.py -q`. The eager path (QC2C_KV_KERNELS=eager) is the
PyTorch code these schemes always ran, the reference here: every case encodes the same tensor with both paths
(the stack, and the layers read in place) and compares payload, scale bytes and the decoded tensor bit for bit,
decodes arbitrary payload bytes (NaN codes included) alike, refuses NaN/Inf in the same words, and gives the
same message bytes through the whole codec. Skipped, with the build error as reason, where the extension
cannot be built.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from kernel_cases import DTYPES, assert_refused_alike, built, in_mode  # noqa: F401  (built: the module fixture)
from kv_cases import KINDS, build_tensor

from qc2c.kv.batched import decode_messages, encode_rows
from qc2c.kv.quant import NonFiniteInput, build_scheme
from qc2c.kv.schemes.base import Encoded

RAW = ("fp16", "bf16", "fp32")
SCALED = ("fp8_e4m3", "fp8_e5m2", "nf4")
AXES = ("token", "channel", "head", "layer", "tensor")


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal dtype, shape and bytes (NaN payloads included)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return torch.equal(a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8))


def assert_same_encoded(enc: Encoded, ref: Encoded) -> None:
    for field in ("payload", "scales", "zeros"):
        a, b = getattr(enc, field), getattr(ref, field)
        assert a.dtype == b.dtype == torch.uint8 and a.shape == b.shape, field
        assert torch.equal(a, b), f"{field} differs at {(a != b).nonzero()[:5].tolist()}"
    assert enc.shape == ref.shape


def assert_same(scheme, x: torch.Tensor, out_dtypes: tuple[torch.dtype, ...]) -> None:
    ref = in_mode("eager", lambda: scheme.encode(x))
    enc = in_mode("cpu", lambda: scheme.encode(x))
    assert_same_encoded(enc, ref)
    layers = in_mode("cpu", lambda: scheme.encode_layers([x[:, i].contiguous() for i in range(x.shape[1])]))
    if layers is not None:
        assert_same_encoded(layers, ref)
    for out_dtype in out_dtypes:
        ref_y = in_mode("eager", lambda d=out_dtype: scheme.decode(ref, d))
        y = in_mode("cpu", lambda d=out_dtype: scheme.decode(enc, d))
        assert same_bits(y, ref_y), f"decoded into {out_dtype} differs"


@given(
    name=st.sampled_from(RAW + SCALED),
    shape=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 2), st.integers(1, 40), st.integers(1, 72)),
    axis=st.sampled_from(AXES),
    group_size=st.one_of(st.none(), st.integers(1, 24), st.sampled_from((8, 16, 32, 64))),
    scale_dtype=st.sampled_from(("float16", "float32")),
    kind=st.sampled_from(KINDS),
    dtype=st.sampled_from(tuple(DTYPES)),
    seed=st.integers(0, 2**16),
)
def test_kernels_equal_eager(name, shape, axis, group_size, scale_dtype, kind, dtype, seed):
    scheme = build_scheme(name, axis=axis, group_size=group_size, scale_dtype=scale_dtype)
    x = build_tensor(shape, kind, seed, DTYPES[dtype])
    try:
        in_mode("eager", lambda: scheme.encode(x))
    except NonFiniteInput:  # e.g. `huge` values an fp16 message cannot hold: refused alike (tested below)
        assert_refused_alike(scheme, x)
        return
    assert_same(scheme, x, tuple(DTYPES.values()))


@pytest.mark.parametrize("name", RAW + SCALED)
@pytest.mark.parametrize(("axis", "group_size"), [("token", 64), ("token", 32), ("channel", 64), ("head", None)])
@pytest.mark.parametrize("dtype", list(DTYPES.values()))
def test_kernels_equal_eager_on_a_cache_shape(name: str, axis: str, group_size: int | None, dtype) -> None:
    """The SIMD loops: D = 64, 128 tokens (whole channel groups), values across the formats' ranges."""
    x = build_tensor((3, 4, 2, 128, 64), "outliers", seed=7).to(dtype)
    x[0, 0, 0, 0, :6] = torch.tensor([0.0, -0.0, 1e-7, -3e-5, 2.5e-3, 60000.0]).to(dtype)
    scheme = build_scheme(name, axis=axis, group_size=group_size, scale_dtype="float16")
    assert_same(scheme, x, (torch.float16, torch.bfloat16, torch.float32))


@given(
    name=st.sampled_from(SCALED),
    axis=st.sampled_from(("token", "channel")),
    scale_dtype=st.sampled_from(("float16", "float32")),
    out_dtype=st.sampled_from(tuple(DTYPES)),
    seed=st.integers(0, 2**16),
)
def test_decode_of_any_bytes_equals_eager(name, axis, scale_dtype, out_dtype, seed):
    """Every code byte, fp8's NaN codes included, decodes as eagerly (a message read from the wire)."""
    scheme = build_scheme(name, axis=axis, group_size=16, scale_dtype=scale_dtype)
    shape = (2, 2, 32, 16)
    gen = torch.Generator().manual_seed(seed)
    n_codes = 2 * 2 * 32 * 16 // (2 if name == "nf4" else 1)
    payload = torch.randint(0, 256, (2, n_codes), generator=gen, dtype=torch.uint8)
    payload[0, :256] = torch.arange(256, dtype=torch.uint8)
    scales = (torch.rand(2, scheme.grouping.n_groups(shape), generator=gen) * 8).to(scheme.scale_dtype)
    enc = Encoded(payload, scales.view(torch.uint8), torch.zeros(2, 0, dtype=torch.uint8), shape)
    ref = in_mode("eager", lambda: scheme.decode(enc, DTYPES[out_dtype]))
    y = in_mode("cpu", lambda: scheme.decode(enc, DTYPES[out_dtype]))
    assert torch.equal(torch.isnan(y), torch.isnan(ref))
    assert torch.equal(torch.nan_to_num(y), torch.nan_to_num(ref))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("name", RAW + SCALED)
def test_non_finite_input_is_refused_like_eager(bad: float, name: str) -> None:
    x = build_tensor((1, 2, 1, 9, 16), "normal", seed=1)
    x[0, 1, 0, 4, 7] = bad
    assert_refused_alike(build_scheme(name, axis="token", group_size=4), x)


@pytest.mark.parametrize("name", ["fp16", "fp8_e4m3", "fp8_e5m2", "nf4"])
def test_overflow_is_refused_like_eager(name: str) -> None:
    """fp32 values an fp16 message, or an fp16 scale, cannot hold."""
    x = build_tensor((1, 2, 1, 8, 16), "normal", seed=2) * 1e30
    assert_refused_alike(build_scheme(name, axis="token", group_size=8, scale_dtype="float16"), x)


def _section(dtype: torch.dtype, ragged: bool):
    from qc2c.fuser.seam import SectionKV

    gen = torch.Generator().manual_seed(5)
    sharer = [tuple(torch.randn(3, 2, 24, 32, generator=gen).to(dtype) for _ in (0, 1)) for _ in range(4)]
    mask = torch.ones(3, 24, dtype=torch.bool)
    if ragged:
        mask[1, 20:] = False
    return SectionKV(sharer=sharer, receiver=[], fuse_mask=mask, layer_map={t: t for t in range(4)}, project=None)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", RAW + SCALED)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("ragged", [False, True])
def test_codec_messages_equal_eager(name: str, dtype: torch.dtype, ragged: bool) -> None:
    """Rows through `encode_rows` (a whole batch: layers read in place; ragged: gathered) and `decode_messages`:
    same bytes, same cache."""
    from qc2c.kv.layout import Layout

    section = _section(dtype, ragged)
    scheme = build_scheme(name, axis="token", group_size=32)
    counts = section.fuse_mask.sum(1).tolist()
    sets = [[("", torch.arange(c))] for c in counts]
    layouts = [Layout(set_counts=(c,), segments=((name, (0, 1, 2, 3), 0),)) for c in counts]
    rows = list(range(3))

    def run():
        messages = encode_rows(section, rows, sets, layouts, {name: (scheme, scheme)})
        out = [messages[r] for r in rows]
        sharer, _ = decode_messages(out, dtype=dtype, device="cpu", fuse_mask=section.fuse_mask)
        return [m.to_bytes() for m in out], sharer

    ref_bytes, ref_kv = in_mode("eager", run)
    got_bytes, got_kv = in_mode("cpu", run)
    assert got_bytes == ref_bytes
    for (k, v), (rk, rv) in zip(got_kv, ref_kv):
        assert same_bits(k, rk) and same_bits(v, rv)
