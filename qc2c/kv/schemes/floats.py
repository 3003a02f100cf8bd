"""Unscaled float schemes: fp16 / bf16 (the reference precisions) and fp32 (lossless for float32 runtimes).

The payload is the value's own bits (x cast to the format, viewed as bytes); no scales, no grouping.
fp32 is not one of C2C's precisions: it exists so that a float32 conformance run can check that the
message path with a lossless scheme reproduces uncompressed C2C exactly. Input the format cannot
represent finitely (NaN, Inf, or |x| beyond its range) is refused. On CPU the fused kernels
(qc2c.kv.kernels.cpu) convert and check in one pass, reading the layers in place; same bytes as the eager code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from qc2c.kv.kernels import cpu as kernels
from qc2c.kv.schemes.base import SCHEMES, Encoded, Scheme, check_finite, fused, non_finite


@dataclass(frozen=True)
class RawFloat(Scheme):
    """Shared body: cast and reinterpret. Subclasses set `float_dtype`, `bits`, `rank`."""

    float_dtype: ClassVar[torch.dtype]

    def has_scales(self) -> bool:
        return False

    def encode(self, x: Tensor) -> Encoded:
        if fused(x, self.float_dtype, x.numel()):
            return self._encode_fused(x)
        r = x.shape[0]
        y = x.to(self.float_dtype, copy=True)  # own copy: x may be a reused scratch stack
        check_finite(y.abs().amax() if y.numel() else y, self.name)
        empty = x.new_zeros((r, 0), dtype=torch.uint8)
        return Encoded(y.view(torch.uint8).reshape(r, -1), empty, empty, tuple(x.shape[1:]))

    def encode_layers(self, layers: list[Tensor]) -> Encoded | None:
        """The fused CPU kernels read each layer in place; elsewhere None (see Scheme.encode_layers)."""
        x0 = layers[0]
        if x0.numel() == 0 or not fused(x0, self.float_dtype, len(layers) * x0.numel()):
            return None
        return self._encode_fused(layers)

    def decode(self, enc: Encoded, dtype: torch.dtype) -> Tensor:
        r = enc.payload.shape[0]
        values = enc.payload.view(self.float_dtype).view(r, *enc.shape)
        if dtype != self.float_dtype and fused(values, dtype, values.numel()):
            return kernels.raw_encode(values, dtype)[0]
        return values.to(dtype)

    def _encode_fused(self, x: Tensor | list[Tensor]) -> Encoded:
        y, bad = kernels.raw_encode(x, self.float_dtype)
        if bad:
            raise non_finite(self.name)
        empty = y.new_zeros((y.shape[0], 0), dtype=torch.uint8)
        return Encoded(y.view(torch.uint8).reshape(y.shape[0], -1), empty, empty, tuple(y.shape[1:]))


@SCHEMES.register("fp32")
@dataclass(frozen=True)
class Fp32(RawFloat):
    bits: ClassVar[int] = 32
    rank: ClassVar[int] = 100
    float_dtype: ClassVar[torch.dtype] = torch.float32
    is_lossless_for: ClassVar[tuple[torch.dtype, ...]] = (torch.float32, torch.float16, torch.bfloat16)


@SCHEMES.register("fp16")
@dataclass(frozen=True)
class Fp16(RawFloat):
    bits: ClassVar[int] = 16
    rank: ClassVar[int] = 90
    float_dtype: ClassVar[torch.dtype] = torch.float16
    is_lossless_for: ClassVar[tuple[torch.dtype, ...]] = (torch.float16,)


@SCHEMES.register("bf16")
@dataclass(frozen=True)
class Bf16(RawFloat):
    bits: ClassVar[int] = 16
    rank: ClassVar[int] = 80
    float_dtype: ClassVar[torch.dtype] = torch.bfloat16
    is_lossless_for: ClassVar[tuple[torch.dtype, ...]] = (torch.bfloat16,)
