"""Uniform integer schemes int8 / int4 / int2: symmetric (absmax) or asymmetric (min/max), two conventions.

Symmetric: s = absmax / (2^(b-1) − 1), q = clamp(round(x/s), ±(2^(b-1) − 1)) stored offset by 2^(b-1)
(int2 symmetric therefore uses 3 of its 4 levels); the scale is rounded UP to the scale dtype.

Asymmetric, `convention: kivi` (the default; KIVI, arXiv:2402.02750, its quantize/dequantize math):
s = (max − min) / (2^b − 1), q = clamp(round((x − min)/s), 0, 2^b − 1), x̂ = q·s + min. The scale and the
min are stored per group at the scale dtype, each rounded to the NEAREST value (an exactly representable
scale or min is stored exactly), and the codes are computed from the stored pair. A zero range (constant
group) takes the dtype's smallest normal as scale, so it decodes to its stored min.

Asymmetric, `convention: observer` (PyTorch's MinMaxObserver; every qc2c result before the kivi convention):
the range is widened to include 0, s = (max − min) / (2^b − 1) rounded UP, integer zero point
z = round(−min/s) in [0, 2^b − 1] stored as one byte per group, q = clamp(round(x/s) + z, 0, 2^b − 1),
x̂ = (q − z)·s. Bit-identical to those earlier results, scale rounding included.

Which is better: kivi spends the full 2^b levels on the group's own range, so groups far from 0 (fixed-sign
outlier key channels, KIVI's reason for per-channel keys) lose far less; observer represents 0 exactly and
keeps a 1-byte offset instead of a float, which wins on zero-centred heavy-tailed groups
(`python -m qc2c.bench codec --quality` measures both).

Division is a multiplication by 1/s computed once per group; the reference implementation in
tests/qc2c/kv/reference.py does the same arithmetic so the two agree bit for bit. In code, the per-group
float `zero` is the integer zero point (symmetric, observer) or the stored min (kivi), as in the C++ kernels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from qc2c.kv.kernels import cpu as kernels
from qc2c.kv.schemes import gpu
from qc2c.kv.schemes.base import (
    SCHEMES,
    Encoded,
    Scheme,
    check_finite,
    load_scales,
    non_finite,
    pack,
    scale_bytes,
    scale_overflow,
    scratch,
    store_nearest,
    store_scales,
    unpack,
)


@dataclass(frozen=True)
class UniformInt(Scheme):
    """Shared body of int8/int4/int2; subclasses set `bits` and `rank`."""

    def zero_bytes(self) -> int:
        if self.symmetric:
            return 0
        return self.scale_dtype.itemsize if self.kivi else 1

    @property
    def kivi(self) -> bool:
        return not self.symmetric and self.convention == "kivi"

    def encode(self, x: Tensor) -> Encoded:
        if self._fused(x, x.dtype):
            return self._encode_fused(x)
        enc = None if _COMPILED else gpu.encode_uniform(self, x)  # Triton kernels on CUDA
        if enc is not None:
            return enc
        r = x.shape[0]
        shape = tuple(x.shape[1:])
        # x stays in its own dtype (fp16/bf16 caches: half the bytes read); min/max are exact in any float
        # dtype and x * (1/s) promotes to float32, so the arithmetic is the float32 reference's.
        xg, dim, unview = self.grouping.view(x)
        qmax = (1 << self.bits) - 1
        lo, hi = xg.amin(dim=dim, keepdim=True).float(), xg.amax(dim=dim, keepdim=True).float()
        low, high = 0, qmax
        if self.symmetric:
            # clamp(round(x/s), ±h) + h + 1 == clamp(round(x/s) + h + 1, 1, 2h + 1): integers, exact
            half = (1 << (self.bits - 1)) - 1
            absmax = torch.maximum(-lo, hi)
            check_finite(absmax, self.name)
            stored, scale = store_scales(absmax / half, self.scale_dtype)
            inv, zero, low, high = scale.reciprocal(), torch.full_like(scale, half + 1), 1, 2 * half + 1
            zeros = x.new_zeros((r, 0), dtype=torch.uint8)
        elif self.kivi:
            check_finite(hi - lo, self.name)
            stored, scale = store_nearest(
                ((hi - lo) / qmax).clamp_min_(torch.finfo(self.scale_dtype).tiny), self.scale_dtype
            )
            stored_min, zero = store_nearest(lo, self.scale_dtype)
            inv = scale.reciprocal()
            zeros = scale_bytes(stored_min, r)
        else:
            lo, hi = lo.clamp_max_(0.0), hi.clamp_min_(0.0)
            check_finite(hi - lo, self.name)
            stored, scale = store_scales((hi - lo) / qmax, self.scale_dtype)
            inv = scale.reciprocal()
            zero = (-lo * inv).round_().clamp_(0, qmax)
            zeros = zero.to(torch.uint8).reshape(r, -1)
        codes = unview(_quantize(xg, inv, zero, low, high, self.kivi)).reshape(r, -1)
        return Encoded(_pack(codes, self.bits), scale_bytes(stored, r), zeros, shape)

    def encode_layers(self, layers: list[Tensor]) -> Encoded | None:
        """The fused CPU kernels, or on CUDA the Triton kernels, read each layer in place; elsewhere None (see
        Scheme.encode_layers)."""
        x0 = layers[0]
        if x0.numel() == 0:
            return None
        if not self._fused(x0, x0.dtype, len(layers) * x0.numel()):
            return None if _COMPILED else gpu.encode_uniform(self, layers)  # Triton kernels on CUDA
        return self._encode_fused(layers)

    def decode(self, enc: Encoded, dtype: torch.dtype) -> Tensor:
        if self._fused(enc.payload, dtype, enc.payload.shape[0] * math.prod(enc.shape)):
            shape, g = (enc.payload.shape[0], *enc.shape), self.grouping
            scales = enc.scales.contiguous().view(self.scale_dtype)
            zeros = enc.zeros.contiguous().view(self.scale_dtype) if self.kivi else enc.zeros
            return kernels.decode(
                enc.payload, scales, zeros, shape, dtype, self.bits, self.symmetric, self.kivi, g.axis, g.group_size
            )
        fast = None if _COMPILED else gpu.decode_uniform(self, enc, dtype)  # Triton kernels on CUDA
        if fast is not None:
            return fast
        r = enc.payload.shape[0]
        codes = _unpack(enc.payload, self.bits, math.prod(enc.shape)).view(r, *enc.shape)
        cg, dim, unview = self.grouping.view(codes)
        scale = load_scales(enc, self.scale_dtype).view(_stat_shape(cg, dim))
        if self.symmetric:
            zero = torch.full_like(scale, float(1 << (self.bits - 1)))
        elif self.kivi:
            zero = enc.zeros.view(self.scale_dtype).float().view(_stat_shape(cg, dim))
        else:
            zero = enc.zeros.view(_stat_shape(cg, dim)).float()
        return unview(_dequantize(cg, zero, scale, dtype, self.kivi))

    # ---- fused CPU kernels (qc2c.kv.kernels.cpu): same bytes, one pass each way ----

    def _fused(self, t: Tensor, dtype: torch.dtype, n_elements: int | None = None) -> bool:
        return (
            t.device.type == "cpu"
            and self.grouping.axis in ("token", "channel")
            and not _COMPILED
            and dtype in (torch.float16, torch.bfloat16, torch.float32)
            and kernels.active(t.device, t.numel() if n_elements is None else n_elements)
        )

    def _encode_fused(self, x: Tensor | list[Tensor]) -> Encoded:
        g = self.grouping
        payload, scales, zeros, flags = kernels.encode(
            x, self.bits, self.symmetric, self.kivi, g.axis, g.group_size, self.scale_dtype == torch.float16
        )
        if flags & kernels.BAD_INPUT:
            raise non_finite(self.name)
        if flags & kernels.SCALE_OVERFLOW:
            raise scale_overflow(self.scale_dtype)
        shape = tuple(x.shape[1:]) if isinstance(x, Tensor) else (len(x), *x[0].shape[1:])
        return Encoded(payload, scales.view(torch.uint8), zeros.view(torch.uint8), shape)


# ---- elementwise kernels: eager (in reused scratch) or, opted in, torch.compile'd ----

_COMPILED: dict[str, object] = {}


def use_compiled_kernels(enabled: bool) -> None:
    """Opt in to torch.compile for the two elementwise passes (inductor: one fused loop each).

    Off by default: compiling costs tens of seconds per new shape on a CPU, and the eager path is what
    the reference-equality tests pin. `python -m qc2c.bench codec --compile` measures it.
    """
    _COMPILED.clear()
    if enabled:
        _COMPILED["quantize"] = torch.compile(_quantize_math, dynamic=True)
        _COMPILED["dequantize"] = torch.compile(_dequantize_math, dynamic=True)
        _COMPILED["pack"] = torch.compile(pack, dynamic=True)
        _COMPILED["unpack"] = torch.compile(unpack, dynamic=True)


def _quantize_math(xg: Tensor, inv: Tensor, zero: Tensor, low: int, high: int, kivi: bool) -> Tensor:
    if kivi:
        return torch.sub(xg, zero).mul(inv).round().clamp(low, high).to(torch.uint8)
    return torch.mul(xg, inv).round().add(zero).clamp(low, high).to(torch.uint8)


def _dequantize_math(cg: Tensor, zero: Tensor, scale: Tensor, dtype: torch.dtype, kivi: bool) -> Tensor:
    if kivi:
        return (cg.float() * scale + zero).to(dtype)
    return ((cg.float() - zero) * scale).to(dtype)


def _pack(codes: Tensor, bits: int) -> Tensor:
    return _COMPILED["pack"](codes, bits) if "pack" in _COMPILED and bits < 8 else pack(codes, bits)


def _unpack(packed: Tensor, bits: int, m: int) -> Tensor:
    return _COMPILED["unpack"](packed, bits, m) if "unpack" in _COMPILED and bits < 8 else unpack(packed, bits, m)


def _quantize(xg: Tensor, inv: Tensor, zero: Tensor, low: int, high: int, kivi: bool) -> Tensor:
    """uint8 codes, shape of xg: clamp(round(x · inv) + zero, low, high), or kivi's clamp(round((x − min) · inv),
    low, high) with the min in `zero`."""
    if "quantize" in _COMPILED:
        return _COMPILED["quantize"](xg, inv, zero, low, high, kivi)
    work = scratch(tuple(xg.shape), torch.float32, xg.device, "encode")
    if kivi:
        return torch.sub(xg, zero, out=work).mul_(inv).round_().clamp_(low, high).to(torch.uint8)
    return torch.mul(xg, inv, out=work).round_().add_(zero).clamp_(low, high).to(torch.uint8)


def _dequantize(cg: Tensor, zero: Tensor, scale: Tensor, dtype: torch.dtype, kivi: bool) -> Tensor:
    """(codes − zero) · scale, or kivi's codes · scale + min (min in `zero`), in float32, rounded once into dtype."""
    if "dequantize" in _COMPILED:
        return _COMPILED["dequantize"](cg, zero, scale, dtype, kivi)
    y = scratch(tuple(cg.shape), torch.float32, cg.device, "decode").copy_(cg)
    out = torch.empty(y.shape, dtype=dtype, device=y.device)
    if kivi:
        return torch.add(y.mul_(scale), zero, out=out)
    return torch.mul(y.sub_(zero), scale, out=out)


def _stat_shape(xg: Tensor, dim: int) -> tuple[int, ...]:
    shape = list(xg.shape)
    shape[dim] = 1
    return tuple(shape)


@SCHEMES.register("int8")
@dataclass(frozen=True)
class Int8(UniformInt):
    bits: ClassVar[int] = 8
    rank: ClassVar[int] = 60


@SCHEMES.register("int4")
@dataclass(frozen=True)
class Int4(UniformInt):
    bits: ClassVar[int] = 4
    rank: ClassVar[int] = 30


@SCHEMES.register("int2")
@dataclass(frozen=True)
class Int2(UniformInt):
    bits: ClassVar[int] = 2
    rank: ClassVar[int] = 10
