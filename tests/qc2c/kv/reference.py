"""Plain-loop reference of the scaled schemes and of bit packing (the PyTorch fake-quant test habit).

Loops over groups in the documented order and quantizes each group on its own, with the arithmetic the
scheme docstrings state (float32; division as multiplication by 1/s; scale floored at the scale dtype's
smallest normal, then rounded up to it, or for the `kivi` convention scale and min rounded to nearest).
The fast code in qc2c.kv.schemes must agree bit for bit.
Used by tests only: `python -m pytest tests/qc2c/kv/test_reference_equality.py -q`.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

NF4_LEVELS = (
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
)  # fmt: skip  (retyped from docs/kv-compression.md §3, not imported, so a typo in the module is caught)


def groups(shape: tuple[int, ...], axis: str, group_size: int | None):
    """Yield index tuples (slices) of each group of x[r] in scale order; shape = (R, L, H, n, D)."""
    r_n, l_n, h_n, t_n, d_n = shape
    for r in range(r_n):
        if axis == "tensor":
            yield (r,)
            continue
        for ly in range(l_n):
            if axis == "layer":
                yield (r, ly)
                continue
            for h in range(h_n):
                if axis == "head":
                    yield (r, ly, h)
                elif axis == "token":
                    g = group_size or d_n
                    for t in range(t_n):
                        for start in range(0, d_n, g):
                            yield (r, ly, h, t, slice(start, start + g))
                else:  # channel
                    g = group_size or t_n
                    for start in range(0, t_n, g):
                        for d in range(d_n):
                            yield (r, ly, h, slice(start, start + g), d)


def store(scale: Tensor, dtype: torch.dtype) -> Tensor:
    info = torch.finfo(dtype)
    scale = torch.clamp(scale, min=info.tiny)
    if dtype != torch.float32:
        scale = scale * (1.0 + info.eps)
    return scale.to(dtype)


def encode(
    x: Tensor,
    scheme: str,
    axis: str,
    group_size: int | None,
    symmetric: bool,
    scale_dtype: torch.dtype,
    convention: str = "kivi",
):
    """-> (codes (R, M) uint8 unpacked, scales list per row (float in scale_dtype), offsets list per row: int
    zero points (observer) or mins in scale_dtype (kivi))."""
    x = x.float()
    codes = torch.zeros(x.shape, dtype=torch.uint8)
    scales: list[list[Tensor]] = [[] for _ in range(x.shape[0])]
    zeros: list[list[int]] = [[] for _ in range(x.shape[0])]
    for index in groups(tuple(x.shape), axis, group_size):
        values = x[index].reshape(-1)
        code, scale, zero = _encode_group(values, scheme, symmetric, scale_dtype, convention)
        codes[index] = code.reshape(codes[index].shape)
        scales[index[0]].append(scale)
        if zero is not None:
            zeros[index[0]].append(zero)
    return codes.reshape(x.shape[0], -1), scales, zeros


def _encode_group(v: Tensor, scheme: str, symmetric: bool, scale_dtype: torch.dtype, convention: str):
    if scheme in ("int8", "int4", "int2"):
        bits = int(scheme[3:])
        if symmetric:
            half = 2 ** (bits - 1) - 1
            stored = store(v.abs().max() / half, scale_dtype)
            inv = 1.0 / stored.float()
            q = torch.clamp(torch.round(v * inv), -half, half) + (half + 1)
            return q.to(torch.uint8), stored, None
        qmax = 2**bits - 1
        if convention == "kivi":
            scale = torch.clamp((v.max() - v.min()) / qmax, min=torch.finfo(scale_dtype).tiny).to(scale_dtype)
            mn = v.min().to(scale_dtype)
            q = torch.clamp(torch.round((v - mn.float()) * (1.0 / scale.float())), 0, qmax)
            return q.to(torch.uint8), scale, mn
        lo, hi = torch.clamp(v.min(), max=0.0), torch.clamp(v.max(), min=0.0)
        stored = store((hi - lo) / qmax, scale_dtype)
        inv = 1.0 / stored.float()
        zero = torch.clamp(torch.round(-lo * inv), 0, qmax)
        q = torch.clamp(torch.round(v * inv) + zero, 0, qmax)
        return q.to(torch.uint8), stored, int(zero)
    if scheme == "nf4":
        stored = store(v.abs().max(), scale_dtype)
        y = v * (1.0 / stored.float())
        mids = [(a + b) / 2 for a, b in itertools.pairwise(NF4_LEVELS)]
        q = torch.tensor([sum(1 for m in mids if float(e) > torch.tensor(m, dtype=torch.float32)) for e in y])
        return q.to(torch.uint8), stored, None
    fp8 = {"fp8_e4m3": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}[scheme]
    fmax = torch.finfo(fp8).max
    stored = store(v.abs().max() / fmax, scale_dtype)
    y = torch.clamp(v * (1.0 / stored.float()), -fmax, fmax).to(fp8)
    return y.view(torch.uint8), stored, None


def pack(codes: list[int], bits: int) -> bytes:
    """Bit by bit: code i occupies bits [(i mod per)·bits, …) of byte i // per."""
    per = 8 // bits
    out = bytearray((len(codes) + per - 1) // per)
    for i, c in enumerate(codes):
        out[i // per] |= (c & ((1 << bits) - 1)) << ((i % per) * bits)
    return bytes(out)


def decode_group(codes: Tensor, scale: Tensor, zero, symmetric: bool, bits: int, convention: str) -> Tensor:
    """float32 values of one int group from its codes, stored scale and offset (the schemes' documented x̂)."""
    q, s = codes.float(), scale.float()
    if symmetric:
        return (q - 2 ** (bits - 1)) * s
    if convention == "kivi":
        return q * s + zero.float()
    return (q - zero) * s
