"""The schemes' side of the Triton kernels (qc2c.kv.kernels.cuda): int8/int4/int2, fp8 and nf4 on CUDA tensors.

Each function returns None where the kernels do not apply (not a CUDA tensor, QC2C_KV_KERNELS=cpu|eager, a
geometry the tiles do not cover, a cache dtype they do not read), and the scheme then runs its eager code;
where they apply, the bytes and decoded values are the eager code's.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from qc2c.kv.grouping import Grouping
from qc2c.kv.kernels import cpu as cpu_kernels
from qc2c.kv.kernels import cuda
from qc2c.kv.schemes.base import Encoded, Scheme, non_finite, scale_overflow

FLOATS = (torch.float16, torch.bfloat16, torch.float32)


def applies(t: Tensor, dtype: torch.dtype) -> bool:
    return t.dtype in (*FLOATS, torch.uint8) and dtype in FLOATS and t.numel() > 0 and cuda.active(t.device)


def _raise(flags: int, scheme: Scheme) -> None:
    if flags & cpu_kernels.BAD_INPUT:
        raise non_finite(scheme.name)
    if flags & cpu_kernels.SCALE_OVERFLOW:
        raise scale_overflow(scheme.scale_dtype)


def geometry(grouping: Grouping, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """One row of (L, H, n, D) = `shape` as (S, length, g, I): S slices of `length` elements at stride I along the
    grouped axis, in groups of g (the last one ragged), stats in `Grouping.view`'s order (triton_codec's docstring)."""
    n_layers, n_heads, n_tokens, head_dim = shape
    if grouping.axis == "token":
        return n_layers * n_heads * n_tokens, head_dim, min(grouping.group_size or head_dim, head_dim), 1
    if grouping.axis == "channel":
        return n_layers * n_heads, n_tokens, min(grouping.group_size or n_tokens, n_tokens), head_dim
    keep = {"head": 2, "layer": 1, "tensor": 0}[grouping.axis]
    slices = math.prod(shape[:keep])
    return slices, math.prod(shape) // max(slices, 1), math.prod(shape) // max(slices, 1), 1


def _geometry(scheme: Scheme, shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    return geometry(scheme.grouping, shape) if math.prod(shape) else None


def _first_and_shape(x: Tensor | list[Tensor]) -> tuple[Tensor, tuple[int, ...]]:
    """(a tensor to check, one row's (L, H, n, D)) of a stack (R, L, H, n, D) or of its layers (R, H, n, D)."""
    if isinstance(x, Tensor):
        return x, tuple(x.shape[1:])
    return x[0], (len(x), *x[0].shape[1:])


def encode_uniform(scheme, x: Tensor | list[Tensor]) -> Encoded | None:
    """A UniformInt scheme's encode of x (R, L, H, n, D), or of its layers read in place, by the Triton kernels;
    None where they do not apply."""
    x0, shape = _first_and_shape(x)
    geo = _geometry(scheme, shape)
    if geo is None or not applies(x0, x0.dtype):
        return None
    out = cuda.uniform_encode(x, geo, scheme.bits, scheme.symmetric, scheme.kivi, scheme.scale_dtype)
    if out is None:
        return None
    payload, scales, zeros, flags = out
    _raise(flags, scheme)
    return Encoded(payload, scales.view(torch.uint8), zeros.view(torch.uint8), shape)


def decode_uniform(scheme, enc: Encoded, dtype: torch.dtype) -> Tensor | None:
    """A UniformInt scheme's decode by the Triton kernels, or None."""
    geo = _geometry(scheme, enc.shape)
    if geo is None or not applies(enc.payload, dtype):
        return None
    scales = enc.scales.contiguous().view(scheme.scale_dtype)
    zeros = enc.zeros.contiguous().view(scheme.scale_dtype) if scheme.kivi else enc.zeros
    shape = (enc.payload.shape[0], *enc.shape)
    return cuda.uniform_decode(
        enc.payload, scales, zeros, shape, dtype, geo, scheme.bits, scheme.symmetric, scheme.kivi
    )


def encode_scaled(scheme: Scheme, x: Tensor | list[Tensor], kind: int, mids: Tensor | None = None) -> Encoded | None:
    """fp8 (kind 0 e4m3fn, 1 e5m2) or nf4 (kind 2, `mids` its midpoints) encode of x (R, L, H, n, D), or of its
    layers read in place, by the Triton kernels; None where they do not apply."""
    x0, shape = _first_and_shape(x)
    geo = _geometry(scheme, shape)
    if geo is None or not applies(x0, x0.dtype):
        return None
    fmax = torch.finfo(torch.float8_e4m3fn if kind == 0 else torch.float8_e5m2).max if kind < 2 else 1.0
    empty = torch.zeros(0)
    out = cuda.scaled_encode(x, geo, kind, fmax, scheme.scale_dtype, empty if mids is None else mids)
    if out is None:
        return None
    codes, scales, flags = out
    _raise(flags, scheme)
    return Encoded(codes, scales.view(torch.uint8), x0.new_zeros((x0.shape[0], 0), dtype=torch.uint8), shape)


def decode_scaled(scheme: Scheme, enc: Encoded, dtype: torch.dtype, bits: int, table: Tensor) -> Tensor | None:
    """fp8 (bits 8, `table` the 256 byte values) or nf4 (bits 4, the 16 levels) decode by the Triton kernels."""
    geo = _geometry(scheme, enc.shape)
    if geo is None or not applies(enc.payload, dtype) or math.prod(enc.shape) == 0:
        return None
    scales = enc.scales.contiguous().view(scheme.scale_dtype)
    shape = (enc.payload.shape[0], *enc.shape)
    return cuda.scaled_decode(enc.payload, scales, shape, dtype, geo, bits, table)
