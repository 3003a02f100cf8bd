"""NF4: 16 normal-quantile levels × an absmax scale per group (QLoRA, arXiv:2305.14314).

The codebook is bitsandbytes' (docs/kv-compression.md §3). A value maps to the nearest level, found by
comparing x/absmax with the midpoints between neighbouring levels (ties go to the lower level), so
|decode(encode(x)) − x| <= absmax × (largest codebook gap)/2. Codes pack two per byte. On CPU the fused kernels
(qc2c.kv.kernels.cpu) compute the group absmax, and the packed codes, in one pass each; same bytes.
"""

from __future__ import annotations

import math
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
    pack,
    scale_bytes,
    store_scales,
    unpack,
)

NF4_LEVELS = (
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0,
)  # fmt: skip
NF4_MIDPOINTS = tuple((a + b) / 2 for a, b in zip(NF4_LEVELS, NF4_LEVELS[1:]))
NF4_MAX_GAP = max(b - a for a, b in zip(NF4_LEVELS, NF4_LEVELS[1:]))


@SCHEMES.register("nf4")
@dataclass(frozen=True)
class NF4(Scheme):
    """4-bit NormalFloat with one absmax per group; `symmetric` is ignored (the codebook is fixed)."""

    bits: ClassVar[int] = 4
    rank: ClassVar[int] = 35

    def encode(self, x: Tensor) -> Encoded:
        enc = self.encode_layers(x)  # the stack, read as one tensor
        if enc is None:
            enc = gpu.encode_scaled(self, x, 2, torch.tensor(NF4_MIDPOINTS, dtype=torch.float32))  # Triton, CUDA
        if enc is not None:
            return enc
        r = x.shape[0]
        xg, dim, unview = self.grouping.view(x)
        absmax = group_absmax(xg, dim, self.name)
        stored, scale = store_scales(absmax, self.scale_dtype)
        mids = torch.tensor(NF4_MIDPOINTS, dtype=torch.float32, device=x.device)
        codes = torch.bucketize(torch.mul(xg, scale.reciprocal()), mids).to(torch.uint8)
        flat = unview(codes).reshape(r, -1)
        return Encoded(
            pack(flat, 4), scale_bytes(stored, r), x.new_zeros((r, 0), dtype=torch.uint8), tuple(x.shape[1:])
        )

    def decode(self, enc: Encoded, dtype: torch.dtype) -> Tensor:
        levels = torch.tensor(NF4_LEVELS, dtype=torch.float32)
        fast = decode_scaled_fused(self, enc, dtype, 2, levels, even=True)
        if fast is None:
            fast = gpu.decode_scaled(self, enc, dtype, 4, levels)  # Triton kernels on CUDA
        if fast is not None:
            return fast
        r = enc.payload.shape[0]
        codes = unpack(enc.payload, 4, math.prod(enc.shape)).view(r, *enc.shape)
        cg, dim, unview = self.grouping.view(codes)
        stat = list(cg.shape)
        stat[dim] = 1
        levels = torch.tensor(NF4_LEVELS, dtype=torch.float32, device=codes.device)
        scale = load_scales(enc, self.scale_dtype).view(stat)
        return unview((levels[cg.long()] * scale).to(dtype))

    def encode_layers(self, layers: list[Tensor] | Tensor) -> Encoded | None:
        """The fused CPU kernels read each layer (or a stack) in place; elsewhere None (see Scheme.encode_layers)."""
        mids = torch.tensor(NF4_MIDPOINTS, dtype=torch.float32)
        enc = encode_scaled_fused(self, layers, 2, mids, even=True)
        if enc is None and not isinstance(layers, torch.Tensor) and layers[0].numel():
            enc = gpu.encode_scaled(self, layers, 2, mids)  # Triton kernels on CUDA, layers read in place
        return enc
