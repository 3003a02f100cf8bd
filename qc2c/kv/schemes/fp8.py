"""FP8 e4m3 / e5m2 with a scale per group: s = amax / fmax, codes = float8(x / s) (torch float8 dtypes).

e4m3fn has no Inf (max 448) and e5m2 max is 57344; x/s is clamped to ±fmax before the cast because the
rounded scale can push it a hair past fmax, and e4m3fn would turn that into NaN. Relative error: at most
2^-4 (e4m3) / 2^-3 (e5m2) of |x| for normals, plus half the smallest subnormal × s near zero. On CPU the fused kernels (qc2c.kv.kernels.cpu) compute the
group absmax and the codes in one pass each, and decode through a table of the 256 byte values; same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from qc2c.kv.schemes import gpu
from qc2c.kv.schemes.base import (
    SCHEMES,
    Encoded,
    Scheme,
    decode_scaled_fused,
    encode_scaled_fused,
    group_absmax,
    load_scales,
    scale_bytes,
    store_scales,
)


@dataclass(frozen=True)
class ScaledFloat8(Scheme):
    """Shared body of the two fp8 formats; subclasses set `fp8_dtype`."""

    bits: ClassVar[int] = 8
    fp8_dtype: ClassVar[torch.dtype]

    def encode(self, x: Tensor) -> Encoded:
        enc = encode_scaled_fused(self, x, self._kind(), _NO_TABLE)
        if enc is None:
            enc = gpu.encode_scaled(self, x, self._kind())  # Triton kernels on CUDA
        if enc is not None:
            return enc
        r = x.shape[0]
        xg, dim, unview = self.grouping.view(x)
        fmax = torch.finfo(self.fp8_dtype).max
        amax = group_absmax(xg, dim, self.name)
        stored, scale = store_scales(amax / fmax, self.scale_dtype)
        y = torch.mul(xg, scale.reciprocal()).clamp_(-fmax, fmax).to(self.fp8_dtype)
        codes = unview(y.view(torch.uint8)).reshape(r, -1)
        return Encoded(codes, scale_bytes(stored, r), x.new_zeros((r, 0), dtype=torch.uint8), tuple(x.shape[1:]))

    def decode(self, enc: Encoded, dtype: torch.dtype) -> Tensor:
        table = torch.arange(256, dtype=torch.uint8).view(self.fp8_dtype).float()
        fast = decode_scaled_fused(self, enc, dtype, self._kind(), table)
        if fast is None:
            fast = gpu.decode_scaled(self, enc, dtype, 8, table)  # Triton kernels on CUDA
        if fast is not None:
            return fast
        r = enc.payload.shape[0]
        codes = enc.payload.view(self.fp8_dtype).view(r, *enc.shape)
        cg, dim, unview = self.grouping.view(codes.view(torch.uint8))
        stat = list(cg.shape)
        stat[dim] = 1
        scale = load_scales(enc, self.scale_dtype).view(stat)
        return unview((cg.view(self.fp8_dtype).float() * scale).to(dtype))

    def encode_layers(self, layers: list[Tensor]) -> Encoded | None:
        """The fused CPU kernels, or on CUDA the Triton kernels, read each layer in place; elsewhere None (see
        Scheme.encode_layers)."""
        enc = encode_scaled_fused(self, layers, self._kind(), _NO_TABLE)
        return enc if enc is not None or not layers[0].numel() else gpu.encode_scaled(self, layers, self._kind())

    def _kind(self) -> int:
        """The kernels' name for the format: 0 e4m3fn, 1 e5m2."""
        return 0 if self.fp8_dtype == torch.float8_e4m3fn else 1


_NO_TABLE = torch.zeros(0)


@SCHEMES.register("fp8_e4m3")
@dataclass(frozen=True)
class Fp8E4M3(ScaledFloat8):
    rank: ClassVar[int] = 50
    fp8_dtype: ClassVar[torch.dtype] = torch.float8_e4m3fn


@SCHEMES.register("fp8_e5m2")
@dataclass(frozen=True)
class Fp8E5M2(ScaledFloat8):
    rank: ClassVar[int] = 40
    fp8_dtype: ClassVar[torch.dtype] = torch.float8_e5m2
