"""Uniform integer schemes int8 / int4 / int2: symmetric (absmax) or asymmetric (min/max + zero point).

Symmetric: s = absmax / (2^(b-1) − 1), q = clamp(round(x/s), ±(2^(b-1) − 1)) stored offset by 2^(b-1)
(int2 symmetric therefore uses 3 of its 4 levels). Asymmetric: the range is widened to include 0 (PyTorch's
MinMaxObserver convention), s = (max − min) / (2^b − 1), integer zero point z = round(−min/s) in
[0, 2^b − 1] stored as one byte per group, q = clamp(round(x/s) + z, 0, 2^b − 1). Including 0 keeps z in
range, so constant groups decode exactly up to the scale's rounding and no group ever divides by zero.
Either way |decode(encode(x)) − x| <= s/2 with s the stored (rounded-up) scale.

Division is a multiplication by 1/s computed once per group; the reference implementation in
tests/qc2c/kv/reference.py does the same arithmetic so the two agree bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from qc2c.kv.schemes.base import (
    SCHEMES,
    Encoded,
    Scheme,
    check_finite,
    load_scales,
    pack,
    scale_bytes,
    scratch,
    store_scales,
    unpack,
)


@dataclass(frozen=True)
class UniformInt(Scheme):
    """Shared body of int8/int4/int2; subclasses set `bits` and `rank`."""

    def has_zeros(self) -> bool:
        return not self.symmetric

    def encode(self, x: Tensor) -> Encoded:
        r = x.shape[0]
        shape = tuple(x.shape[1:])
        # x stays in its own dtype (fp16/bf16 caches: half the bytes read); min/max are exact in any float
        # dtype and x * (1/s) promotes to float32, so the arithmetic is the float32 reference's.
        xg, dim, unview = self.grouping.view(x)
        qmax = (1 << self.bits) - 1
        lo, hi = xg.amin(dim=dim, keepdim=True).float(), xg.amax(dim=dim, keepdim=True).float()
        work = scratch(tuple(xg.shape), torch.float32, x.device, "encode")
        if self.symmetric:
            half = (1 << (self.bits - 1)) - 1
            absmax = torch.maximum(-lo, hi)
            check_finite(absmax, self.name)
            stored, scale = store_scales(absmax / half, self.scale_dtype)
            q = torch.mul(xg, scale.reciprocal(), out=work).round_().clamp_(-half, half).add_(half + 1)
            zeros = x.new_zeros((r, 0), dtype=torch.uint8)
        else:
            lo, hi = lo.clamp_max_(0.0), hi.clamp_min_(0.0)
            check_finite(hi - lo, self.name)
            stored, scale = store_scales((hi - lo) / qmax, self.scale_dtype)
            inv = scale.reciprocal()
            zero = (-lo * inv).round_().clamp_(0, qmax)
            q = torch.mul(xg, inv, out=work).round_().add_(zero).clamp_(0, qmax)
            zeros = zero.to(torch.uint8).reshape(r, -1)
        codes = unview(q.to(torch.uint8)).reshape(r, -1)
        return Encoded(pack(codes, self.bits), scale_bytes(stored, r), zeros, shape)

    def decode(self, enc: Encoded, dtype: torch.dtype) -> Tensor:
        r = enc.payload.shape[0]
        codes = unpack(enc.payload, self.bits, math.prod(enc.shape)).view(r, *enc.shape)
        cg, dim, unview = self.grouping.view(codes)
        scale = load_scales(enc, self.scale_dtype).view(_stat_shape(cg, dim))
        y = scratch(tuple(cg.shape), torch.float32, cg.device, "decode").copy_(cg)
        if self.symmetric:
            y.sub_(float(1 << (self.bits - 1)))
        else:
            y.sub_(enc.zeros.view(_stat_shape(cg, dim)))
        out = torch.empty(y.shape, dtype=dtype, device=y.device)  # float32 product, one rounding into dtype
        return unview(torch.mul(y, scale, out=out))


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
