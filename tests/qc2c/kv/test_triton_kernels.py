"""The Triton codec kernels give the eager path's bytes: `python -m pytest tests/qc2c/kv/test_triton_kernels.py -q`.

On a CUDA machine the kernels run on the GPU against eager PyTorch on the GPU. Without one they run in Triton's
interpreter on CPU tensors (TRITON_INTERPRET=1; same kernel source, numpy arithmetic) where `triton` is
installed (`pip install triton`: not in requirements.lock, a 290 MB wheel), and skip with that reason where it
is not. Each case compares payload, scale bytes, offsets and the decoded tensor bit for bit, and checks that the
Triton path really ran (a geometry the tiles do not cover would silently compare eager with eager).
"""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from kv_cases import KINDS, build_tensor

from qc2c.config import KVConfig, PrecisionConfig, QuantConfig, SelectionConfig
from qc2c.kv.kernels import cpu as kernels
from qc2c.kv.kernels import cuda
from qc2c.kv.quant import NonFiniteInput, build_scheme

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
HAVE_TRITON = importlib.util.find_spec("triton") is not None
needs_triton = pytest.mark.skipif(
    not HAVE_TRITON,
    reason="triton not installed (`pip install triton`): "
    + ("the CUDA kernels need it" if DEVICE == "cuda" else "no CUDA here, and the Triton interpreter needs it"),
)
FLOATS = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
INT = ("int8", "int4", "int2")
STYLES = [(False, "kivi"), (False, "observer"), (True, "kivi")]


@pytest.fixture
def triton_path():
    """Interpreter on CPU (env set before triton_codec is first imported), mode back to default afterwards."""
    if DEVICE == "cpu" and HAVE_TRITON:
        if "qc2c.kv.kernels.triton_codec" not in sys.modules:
            os.environ["TRITON_INTERPRET"] = "1"  # kept: the kernels, once imported, stay interpreted
        elif os.environ.get("TRITON_INTERPRET") != "1":
            pytest.skip("triton_codec was imported without TRITON_INTERPRET=1 in this process")
        cuda.use_interpreter_on_cpu(True)
    yield
    cuda._state.pop("cpu_interpreter", None)
    kernels.set_mode(None)


def triton_test(fn):
    """A test of the kernels themselves: skipped without triton, run on CUDA or in the interpreter."""
    return pytest.mark.triton(needs_triton(pytest.mark.usefixtures("triton_path")(fn)))  # CI requires the tier


def _calls(monkeypatch) -> list[str]:
    """Names of the cuda.* kernel wrappers that returned a result (not None) during the test."""
    seen: list[str] = []
    for name in ("uniform_encode", "uniform_decode", "scaled_encode", "scaled_decode"):
        fn = getattr(cuda, name)

        def wrapped(*a, _fn=fn, _name=name, **k):
            out = _fn(*a, **k)
            if out is not None:
                seen.append(_name)
            return out

        monkeypatch.setattr(cuda, name, wrapped)
    return seen


def round_trip(mode: str, scheme, x: torch.Tensor, out_dtype: torch.dtype):
    kernels.set_mode(mode)
    try:
        enc = scheme.encode(x)
        return enc, scheme.decode(enc, out_dtype)
    finally:
        kernels.set_mode(None)


def assert_same(scheme, x: torch.Tensor, out_dtype: torch.dtype | None = None) -> None:
    out_dtype = out_dtype or x.dtype
    ref, ref_y = round_trip("eager", scheme, x, out_dtype)
    enc, y = round_trip("cuda", scheme, x, out_dtype)
    for field in ("payload", "scales", "zeros"):
        a, b = getattr(enc, field), getattr(ref, field)
        assert a.dtype == b.dtype == torch.uint8 and a.shape == b.shape, field
        assert torch.equal(a, b), f"{field} differs at {(a != b).nonzero()[:5].tolist()}"
    assert enc.shape == ref.shape and y.dtype == ref_y.dtype and y.shape == ref_y.shape
    assert torch.equal(y, ref_y), f"decoded differs at {(y != ref_y).nonzero()[:5].tolist()}"


@triton_test
@pytest.mark.parametrize("name", INT)
@pytest.mark.parametrize(("axis", "group_size"), [("token", 16), ("token", None), ("channel", 16), ("channel", None)])
@pytest.mark.parametrize(("symmetric", "convention"), STYLES)
def test_int_kernels_equal_eager(name, axis, group_size, symmetric, convention, monkeypatch) -> None:
    """KIVI's layout on outlier channels: keys per channel (whole axis: 20 tokens, a masked tile), values per token."""
    calls = _calls(monkeypatch)
    x = build_tensor((2, 2, 2, 20 if group_size is None else 32, 64), "outliers", seed=5).half().to(DEVICE)
    scheme = build_scheme(name, axis=axis, group_size=group_size, symmetric=symmetric, convention=convention)
    assert_same(scheme, x)
    assert calls == ["uniform_encode", "uniform_decode"]


@triton_test
@pytest.mark.parametrize("name", ["fp8_e4m3", "fp8_e5m2", "nf4"])
@pytest.mark.parametrize(("axis", "group_size"), [("token", 16), ("channel", 8), ("channel", None), ("head", None)])
@pytest.mark.parametrize("kind", ["normal", "tiny", "huge", "zeros", "heavy_tailed"])
def test_float_kernels_equal_eager(name, axis, group_size, kind, monkeypatch) -> None:
    """fp8's bit-built codes (subnormals from `tiny`, the top of the range from `huge`, −0) and nf4's midpoints."""
    calls = _calls(monkeypatch)
    x = build_tensor((2, 2, 1, 24, 32), kind, seed=9).half().to(DEVICE)
    assert_same(build_scheme(name, axis=axis, group_size=group_size), x)
    assert calls == ["scaled_encode", "scaled_decode"]


@triton_test
@settings(max_examples=20, deadline=None)
@given(
    name=st.sampled_from((*INT, "fp8_e4m3", "fp8_e5m2", "nf4")),
    shape=st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 2), st.integers(1, 24), st.integers(1, 40)),
    axis=st.sampled_from(("token", "channel", "layer")),
    group_size=st.one_of(st.none(), st.sampled_from((2, 4, 8, 16))),
    style=st.sampled_from(STYLES),
    scale_dtype=st.sampled_from(("float16", "float32")),
    kind=st.sampled_from(KINDS),
    dtype=st.sampled_from(tuple(FLOATS)),
    out=st.sampled_from(tuple(FLOATS)),
    seed=st.integers(0, 2**16),
)
def test_kernels_equal_eager_on_drawn_cases(name, shape, axis, group_size, style, scale_dtype, kind, dtype, out, seed):
    """Any shape, grouping, cache dtype and decode dtype: Triton where the tiles cover it, eager elsewhere, same bytes."""
    x = build_tensor(shape, kind, seed, FLOATS[dtype]).to(DEVICE)
    scheme = build_scheme(
        name, axis=axis, group_size=group_size, symmetric=style[0], convention=style[1], scale_dtype=scale_dtype
    )
    assert_same(scheme, x, FLOATS[out])


@triton_test
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize(("name", "symmetric", "convention"), [("int4", False, "kivi"), ("int8", True, "kivi"),
                                                               ("int2", False, "observer"), ("fp8_e4m3", False, "kivi"),
                                                               ("nf4", False, "kivi")])  # fmt: skip
def test_non_finite_input_is_refused_like_eager(bad, name, symmetric, convention) -> None:
    x = build_tensor((1, 2, 1, 16, 16), "normal", seed=1)
    x[0, 1, 0, 4, 7] = bad
    scheme = build_scheme(name, axis="channel", group_size=8, symmetric=symmetric, convention=convention)
    messages = []
    for mode in ("eager", "cuda"):
        with pytest.raises(NonFiniteInput) as info:
            round_trip(mode, scheme, x.to(DEVICE), torch.float32)
        messages.append(str(info.value))
    assert messages[0] == messages[1]


@triton_test
@pytest.mark.parametrize("convention", ["kivi", "observer"])
def test_scale_overflow_is_refused_like_eager(convention) -> None:
    """float32 values near the float32 maximum: an fp16 scale (or kivi min) overflows; NaN input wins over it."""
    x = torch.full((1, 1, 1, 4, 8), 3e38)
    x[..., 0] = -3e38
    x2 = x.clone()
    x2[0, 0, 0, 3, :] = float("nan")  # another group holds NaN: the refusal is the input's, as in eager code
    for data in (x, x2):
        scheme = build_scheme("int8", axis="token", convention=convention)
        messages = []
        for mode in ("eager", "cuda"):
            with pytest.raises(NonFiniteInput) as info:
                round_trip(mode, scheme, data.to(DEVICE), torch.float32)
            messages.append(str(info.value))
        assert messages[0] == messages[1]


def test_plan_covers_cache_geometries_and_refuses_the_rest() -> None:
    """Keys per channel (group 64 of 200 tokens: the last group ragged, D 64), values per token (group 64),
    whole-head groups; refused: an odd channel count at int4, an odd group or row length at int4, groups past
    the tile."""
    from qc2c.kv.grouping import Grouping
    from qc2c.kv.schemes.gpu import geometry

    keys = geometry(Grouping("channel", 64), (24, 2, 200, 64))
    assert keys == (48, 200, 64, 64)
    assert cuda.plan(keys, 32, 4) == (True, 64, 64, (32 * 48 * 4, 1), 4)
    values = geometry(Grouping("token", 64), (24, 2, 200, 64))
    assert cuda.plan(values, 2, 2) == (False, 64, 64, (-(-2 * 9600 // 64), 1), 1)
    assert geometry(Grouping("head", None), (2, 3, 4, 5)) == (6, 20, 20, 1)
    assert cuda.plan((1, 24, 24, 1), 3, 8) == (False, 32, 64, (1, 1), 1)  # int8: a masked token group is fine
    assert cuda.plan((2, 40, 40, 7), 1, 4) is None
    assert cuda.plan((10, 25, 25, 1), 1, 4) is None
    assert cuda.plan((10, 72, 32, 1), 1, 4) == (False, 32, 64, (1, 1), 3)  # ragged token groups: 32, 32, 8
    assert cuda.plan((10, 70, 32, 1), 1, 2) is None  # int2: a row ends mid-byte, its byte holds two groups
    assert cuda.plan((1, 4096, 4096, 1), 1, 8) is None
    assert cuda.plan((0, 64, 64, 1), 1, 8) is None


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_ragged_cache_geometries_take_the_kernels(bits) -> None:
    """The default codec on a real prompt length (keys per channel, group 64, 203 tokens; values per token): both
    halves are planned for the kernels, not left to eager code."""
    from qc2c.kv.grouping import Grouping
    from qc2c.kv.schemes.gpu import geometry

    for grouping in (Grouping("channel", 64), Grouping("token", 64)):
        assert cuda.plan(geometry(grouping, (24, 2, 203, 64)), 16, bits) is not None


def test_mode_cuda_requires_triton_and_auto_falls_back(monkeypatch) -> None:
    """Without triton (recorded as an import failure) CUDA tensors go eager in auto mode, and QC2C_KV_KERNELS=cuda
    raises the reason; cpu and eager modes never ask; CPU tensors never take the Triton path outside tests."""
    monkeypatch.setattr(cuda, "_state", {"error": "Triton codec kernels unavailable (test)"})
    gpu = torch.device("cuda")
    try:
        kernels.set_mode("auto")
        assert cuda.active(gpu) is False and "unavailable (test)" in (cuda.describe() or "")
        for mode in ("cpu", "eager"):
            kernels.set_mode(mode)
            assert cuda.active(gpu) is False
        kernels.set_mode("cuda")
        with pytest.raises(kernels.KernelUnavailable, match="unavailable"):
            cuda.active(gpu)
        assert cuda.active(torch.device("cpu")) is False
        assert kernels.active(torch.device("cpu"), 1 << 30) is False  # cuda mode: CPU tensors run eagerly
    finally:
        kernels.set_mode(None)


def test_interpreter_switch_needs_the_environment(monkeypatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        cuda.use_interpreter_on_cpu(True)


CODEC_CASES = [
    KVConfig(quant=QuantConfig(scheme="int4", group_size=32)),  # the demo manifest's message
    KVConfig(quant=QuantConfig(scheme="int2", convention="observer"), selection=SelectionConfig("knorm", keep=0.5)),
    KVConfig(quant=QuantConfig(scheme="int8", symmetric=True), precision=PrecisionConfig(default="int4", last_fp16=1)),
    KVConfig(quant=QuantConfig(scheme="nf4", group_size=16)),
    KVConfig(quant=QuantConfig(scheme="fp8_e4m3", key_axis="token", value_axis="channel", group_size=8)),
]


@triton_test
@pytest.mark.parametrize("kv", CODEC_CASES, ids=lambda kv: kv.quant.scheme)
def test_whole_codec_messages_equal_eager(kv, monkeypatch) -> None:
    """The codec's own path (selection, precision segments, stacking, packing into per-row messages, decode back
    into padded caches) sends the same bytes with the Triton kernels as eagerly, and decodes the same cache."""
    from kv_cases import build_section

    from qc2c.kv.codec import build_codec

    calls = _calls(monkeypatch)
    section = build_section(3, 4, 2, 40, 32, seed=4, n_pad=7, dtype=torch.bfloat16)
    if DEVICE == "cuda":
        section.sharer = [(k.cuda(), v.cuda()) for k, v in section.sharer]
        section.fuse_mask = section.fuse_mask.cuda()
    codec = build_codec(kv, layer_map=section.layer_map, n_sharer_layers=4, n_receiver_layers=4)
    out = {}
    for mode in ("eager", "cuda"):
        kernels.set_mode(mode)
        try:
            messages, _, _ = codec.encode(section)
            kv_out, kept = codec.decode(messages, dtype=torch.bfloat16, device=DEVICE, fuse_mask=section.fuse_mask)
        finally:
            kernels.set_mode(None)
        out[mode] = ([m.to_bytes() for m in messages], kv_out, kept)
    assert out["cuda"][0] == out["eager"][0]
    assert torch.equal(out["cuda"][2], out["eager"][2])
    for (k1, v1), (k2, v2) in zip(out["cuda"][1], out["eager"][1]):
        assert torch.equal(k1, k2) and torch.equal(v1, v2)
    assert "uniform_encode" in calls or "scaled_encode" in calls


@triton_test
@pytest.mark.parametrize("name", ["int8", "int4", "int2", "fp8_e5m2", "nf4"])
@pytest.mark.parametrize(("axis", "group_size"), [("token", 16), ("channel", 8), ("channel", None), ("head", None),
                                                  ("layer", None), ("tensor", None)])  # fmt: skip
def test_layers_read_in_place_equal_eager_on_the_stack(name, axis, group_size, monkeypatch) -> None:
    """encode_layers on separate (R, H, n, D) layers (one of them a non-contiguous view) gives the eager encode of
    their (R, L, H, n, D) stack, byte for byte, without building the stack; the tensor axis (groups spanning
    layers) declines (None), so the codec stacks as before."""
    calls = _calls(monkeypatch)
    gen = torch.Generator().manual_seed(3)
    layers = [torch.randn(3, 2, 24, 32, generator=gen).to(torch.bfloat16).to(DEVICE) for _ in range(3)]
    layers[1] = torch.randn(3, 2, 32, 24, generator=gen).to(torch.bfloat16).to(DEVICE).transpose(2, 3)
    scheme = build_scheme(name, axis=axis, group_size=group_size, convention="observer")
    ref, _ = round_trip("eager", scheme, torch.stack(layers, dim=1), torch.bfloat16)
    kernels.set_mode("cuda")
    try:
        enc = scheme.encode_layers(layers)
    finally:
        kernels.set_mode(None)
    if axis == "tensor":
        assert enc is None and not calls
        return
    assert calls and calls[0].endswith("encode")
    assert enc.shape == ref.shape
    for field in ("payload", "scales", "zeros"):
        assert torch.equal(getattr(enc, field), getattr(ref, field)), field


@triton_test
def test_a_layer_off_a_16_byte_boundary_is_stacked_instead(monkeypatch) -> None:
    """The layered kernel tells the compiler its bases are 16-byte aligned; a layer viewed at an odd offset is not,
    so the kernels decline it (None) and the codec stacks the layers as before."""
    calls = _calls(monkeypatch)
    gen = torch.Generator().manual_seed(5)
    layers = [torch.randn(2, 2, 16, 32, generator=gen).to(torch.bfloat16).to(DEVICE) for _ in range(2)]
    buf = torch.empty(layers[0].numel() + 1, dtype=torch.bfloat16, device=DEVICE)
    layers[1] = buf[1:].view(layers[0].shape).copy_(layers[1])
    assert layers[1].data_ptr() % 16 and layers[1].is_contiguous()
    scheme = build_scheme("int4", axis="channel", group_size=8)
    kernels.set_mode("cuda")
    try:
        assert scheme.encode_layers(layers) is None and not calls
        enc = scheme.encode(torch.stack(layers, dim=1))
    finally:
        kernels.set_mode(None)
    ref, _ = round_trip("eager", scheme, torch.stack(layers, dim=1), torch.bfloat16)
    assert calls == ["uniform_encode"] and torch.equal(enc.payload, ref.payload)


def test_a_kernel_that_fails_to_compile_falls_back_in_auto_and_raises_in_cuda_mode(monkeypatch) -> None:
    """An older Triton may import and then refuse a kernel: auto mode logs the reason, switches the Triton path off
    and gives eager bytes; QC2C_KV_KERNELS=cuda raises KernelUnavailable. (A fake kernels module, so this runs
    without triton and without a GPU.)"""
    import types

    class Refusing:
        def __getitem__(self, grid):
            def launch(*args, **meta):
                raise RuntimeError("CompilationError: unsupported by this Triton (test)")

            return launch

    fake = types.SimpleNamespace(triton=types.SimpleNamespace(__version__="0.0-test"), uniform_encode=Refusing())
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(kernels, "active", lambda *a, **k: False)  # CPU tensors stand in for CUDA ones: no C++ path
    x = build_tensor((1, 2, 1, 16, 16), "normal", seed=2)
    scheme = build_scheme("int4", axis="token", group_size=8)
    ref, _ = round_trip("eager", scheme, x, torch.float32)
    for mode in ("auto", "cuda"):
        monkeypatch.setattr(cuda, "_state", {"module": fake, "cpu_interpreter": True})
        kernels.set_mode(mode)
        try:
            if mode == "cuda":
                with pytest.raises(kernels.KernelUnavailable, match="failed.*unsupported by this Triton"):
                    scheme.encode(x)
            else:
                enc = scheme.encode(x)
                assert torch.equal(enc.payload, ref.payload) and torch.equal(enc.scales, ref.scales)
                assert "eager PyTorch (Triton codec kernels failed" in cuda.describe()
                assert not cuda.active(torch.device("cpu"))  # switched off for the process
        finally:
            kernels.set_mode(None)
