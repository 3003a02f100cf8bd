"""The device check's byte test: on CUDA, the Triton kernels against eager PyTorch, field by field, bit for bit.

tests/qc2c/kv/test_triton_kernels.py is the same test under pytest (and hypothesis), which the bare GPU machines
cannot run (no hypothesis there); this sweep needs only torch, so `python -m qc2c.bench gpu` proves the bytes
on the very device it times. Cases: every int scheme × grouping × convention, fp8 and nf4 × grouping, three
cache dtypes, decode into another dtype, data with outlier channels, tiny and huge magnitudes, constant groups,
odd shapes that fall back to eager, and NaN input refused in the same words.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import torch

INT_STYLES = ((False, "kivi"), (False, "observer"), (True, "kivi"))
GROUPINGS = (("token", 64), ("token", None), ("channel", 64), ("channel", 32), ("channel", None), ("layer", None))
DTYPES = (torch.bfloat16, torch.float16, torch.float32)


def tensor(shape: tuple[int, ...], kind: str, seed: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen)
    if kind == "outliers":
        x[..., : max(1, shape[-1] // 8)] *= 50.0
    elif kind == "tiny":
        x = x * 1e-6
    elif kind == "huge":
        x = x * 1e4
    elif kind == "constant":
        x = torch.full(shape, 1.25)
    return x.to(dtype).to(device)


def cases() -> list[dict[str, Any]]:
    """Most used first (the default codec: kivi, keys per channel and values per token in groups of 64), so a
    sweep cut short by the time budget has covered what runs most."""
    out = []
    for name, (axis, group), (symmetric, convention) in itertools.product(("int8", "int4", "int2"), GROUPINGS,
                                                                         INT_STYLES):  # fmt: skip
        out.append(dict(name=name, axis=axis, group=group, symmetric=symmetric, convention=convention))
    for name, (axis, group) in itertools.product(("fp8_e4m3", "fp8_e5m2", "nf4"), GROUPINGS):
        out.append(dict(name=name, axis=axis, group=group, symmetric=False, convention="kivi"))

    def rank(case: dict[str, Any]) -> tuple[int, int, int]:
        default = case["group"] == 64 and case["convention"] == "kivi" and not case["symmetric"]
        return (not default, case["name"] not in ("int4", "int8"), case["axis"] == "layer")

    return sorted(out, key=rank)


def _round_trip(mode: str, scheme, x: torch.Tensor, out_dtype: torch.dtype):
    from qc2c.kv.kernels import cpu as cpu_kernels

    cpu_kernels.set_mode(mode)
    try:
        enc = scheme.encode(x)
        return enc, scheme.decode(enc, out_dtype)
    finally:
        cpu_kernels.set_mode(None)


def fast_mode(x: torch.Tensor) -> str:
    """The kernels' mode for x: `cuda` (Triton required) on a GPU; `auto` elsewhere (a dry run: eager)."""
    return "cuda" if x.is_cuda else "auto"


def same(scheme, x: torch.Tensor, out_dtype: torch.dtype) -> bool:
    ref, ref_y = _round_trip("eager", scheme, x, out_dtype)
    enc, y = _round_trip(fast_mode(x), scheme, x, out_dtype)
    fields = all(torch.equal(getattr(enc, f), getattr(ref, f)) for f in ("payload", "scales", "zeros"))
    return fields and y.dtype == ref_y.dtype and torch.equal(y, ref_y)


def kernel_bytes(sizes) -> dict[str, Any]:
    """Run every case on `sizes.device` (reduced on a CPU dry run: eager against eager there)."""
    from qc2c.kv.kernels import cuda
    from qc2c.kv.quant import NonFiniteInput, build_scheme

    device = sizes.device
    shape = (2, 3, 2, 100, 64) if device == "cuda" else (1, 2, 1, 20, 16)
    kinds = ("normal", "outliers", "tiny", "huge", "constant")
    failures, n, t0, cut = [], 0, time.monotonic(), None
    for i, case in enumerate(cases()):
        if sizes.left_s() < 20:
            cut = f"time budget: stopped after {n} cases ({time.monotonic() - t0:.0f} s)"
            break
        scheme = build_scheme(case["name"], axis=case["axis"], group_size=case["group"], symmetric=case["symmetric"],
                              convention=case["convention"])  # fmt: skip
        for dtype in DTYPES if device == "cuda" else DTYPES[:1]:
            kind = kinds[(i + DTYPES.index(dtype)) % len(kinds)]
            x = tensor(shape, kind, i, dtype, device)
            out_dtype = DTYPES[(DTYPES.index(dtype) + i) % 3]  # decode into the cache dtype or another one
            n += 1
            if not same(scheme, x, out_dtype):
                failures.append({**case, "dtype": str(dtype)[6:], "kind": kind, "decode": str(out_dtype)[6:]})
    gen = torch.Generator().manual_seed(0)
    for j in range(40 if device == "cuda" and cut is None else 4):  # odd shapes: masked and ragged tiles, eager ones
        dims = [int(v) for v in torch.randint(1, 48, (5,), generator=gen)]
        dims[0], dims[1], dims[2] = dims[0] % 3 + 1, dims[1] % 3 + 1, dims[2] % 2 + 1
        case = cases()[j * 7 % len(cases())]
        scheme = build_scheme(case["name"], axis=case["axis"], group_size=case["group"], symmetric=case["symmetric"],
                              convention=case["convention"])  # fmt: skip
        n += 1
        if not same(scheme, tensor(tuple(dims), "outliers", j, torch.bfloat16, device), torch.bfloat16):
            failures.append({**case, "shape": dims})
    refused = []
    x = tensor((1, 2, 1, 16, 16), "normal", 1, torch.float32, device)
    for mode in ("eager", fast_mode(x)):
        x[0, 1, 0, 4, 7] = float("nan")
        try:
            _round_trip(mode, build_scheme("int4", axis="channel", group_size=8), x, torch.float32)
            refused.append("not refused")
        except NonFiniteInput as exc:
            refused.append(str(exc))
    return {
        "cases": n,
        "failures": failures[:20],
        "n_failures": len(failures),
        "nan_refused_alike": refused[0] == refused[1] != "not refused",
        "path": cuda.describe() if device == "cuda" else "CPU dry run: eager against eager",
        "cut_short": cut,
        "all_equal": not failures and refused[0] == refused[1],
    }
