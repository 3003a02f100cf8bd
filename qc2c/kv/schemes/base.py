"""The quantization scheme family: base class, encoded form, bit packing and scale storage.

A scheme turns the stacked, selected sharer KV of R rows, x: (R, L, H, n, D), into per-row uint8 buffers:
packed codes (`payload`), scale bytes (`scales`) and per-group offsets (`zeros`: integer zero points or float
minimums, see `CONVENTIONS`), and back. Everything stays on
x's device; the only host step is `Message.to_bytes`. `nbytes(shape)` is a closed form that must equal the
packed size (property-tested), so results can report drift = measured − closed form.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from qc2c.dtypes import SCALE_DTYPES as SCALE_DTYPES  # re-exported: the schemes' scale dtypes
from qc2c.kv.grouping import Grouping, Shape
from qc2c.kv.kernels import cpu as kernels
from qc2c.plugins import Plugins

# How an asymmetric uniform scheme maps a group's range to codes (qc2c.kv.schemes.uniform): `kivi`, KIVI's
# own math with a float min per group (the default), or `observer`, PyTorch's MinMaxObserver convention with
# an integer zero point (what every earlier qc2c result used; kept so those stay reproducible).
CONVENTIONS = ("kivi", "observer")


class NonFiniteInput(ValueError):
    """The KV to encode holds NaN or Inf: quantizing it would silently spread garbage to the receiver."""


@dataclass
class Encoded:
    """One half (K or V) of R rows, encoded. Every tensor is uint8 with the row first.

    payload: (R, P) packed codes; scales: (R, G·itemsize) raw scale bytes; zeros: (R, G·`zero_bytes()`) raw
    offset bytes, one uint8 zero point per group (observer) or one scale-dtype min per group (kivi), width 0
    when the scheme has none; shape: one row's (L, H, n, D).
    """

    payload: Tensor
    scales: Tensor
    zeros: Tensor
    shape: Shape

    def to(self, device: torch.device | str) -> Encoded:
        return Encoded(self.payload.to(device), self.scales.to(device), self.zeros.to(device), self.shape)

    def row(self, r: int) -> Encoded:
        return Encoded(self.payload[r : r + 1], self.scales[r : r + 1], self.zeros[r : r + 1], self.shape)


@dataclass(frozen=True)
class Scheme(ABC):
    """One quantization scheme with its grouping. Subclasses set `bits` and `rank` and override encode/decode.

    `rank` orders schemes by precision (higher = more precise): a sharer layer read by several receiver
    layers is sent at the highest rank any of them asks for.
    """

    grouping: Grouping = Grouping("token")
    symmetric: bool = False
    scale_dtype: torch.dtype = torch.float16
    convention: str = "kivi"  # asymmetric uniform schemes only (see CONVENTIONS); other schemes ignore it

    name: ClassVar[str]
    bits: ClassVar[int]
    rank: ClassVar[int]
    is_lossless_for: ClassVar[tuple[torch.dtype, ...]] = ()

    @abstractmethod
    def encode(self, x: Tensor) -> Encoded: ...

    @abstractmethod
    def decode(self, enc: Encoded, dtype: torch.dtype) -> Tensor: ...

    def encode_layers(self, layers: list[Tensor]) -> Encoded | None:
        """`encode` of the (R, L, H, n, D) stack of these (R, H, n, D) layers without building the stack, where
        the scheme can read layers in place; None (the default) where only `encode` of the stack can."""
        return None

    def has_scales(self) -> bool:
        return True

    def zero_bytes(self) -> int:
        """Bytes per group of `Encoded.zeros` (0: the scheme stores no offset)."""
        return 0

    def nbytes(self, shape: Shape) -> dict[str, int]:
        """Closed-form bytes of one encoded row of shape (L, H, n, D): {"payload", "scales"} (scales counts the
        per-group offsets too)."""
        n_elements = math.prod(shape)
        payload = (n_elements * self.bits + 7) // 8
        groups = self.grouping.n_groups(shape) if self.has_scales() else 0
        scale_bytes = groups * self.scale_dtype.itemsize if self.has_scales() else 0
        return {"payload": payload, "scales": scale_bytes + groups * self.zero_bytes()}


SCHEMES: Plugins[Scheme] = Plugins("quantization scheme")


# ---- bit packing ----


def pack(codes: Tensor, bits: int) -> Tensor:
    """(R, M) uint8 codes < 2**bits -> (R, ceil(M·bits/8)) bytes, lowest bits first (little-endian nibbles)."""
    if bits == 8:
        return codes
    per = 8 // bits
    r, m = codes.shape
    extra = -m % per
    if extra:
        codes = torch.cat([codes, codes.new_zeros(r, extra)], dim=1)
    groups = codes.view(r, -1, per)
    out = groups[..., 0].clone()
    for i in range(1, per):
        out |= groups[..., i] << (bits * i)
    return out


def unpack(packed: Tensor, bits: int, m: int) -> Tensor:
    """Inverse of `pack`: (R, P) bytes -> (R, m) codes."""
    if bits == 8:
        return packed
    shifts = torch.arange(0, 8, bits, dtype=torch.uint8, device=packed.device)
    codes = (packed.unsqueeze(-1) >> shifts) & ((1 << bits) - 1)
    return codes.view(packed.shape[0], -1)[:, :m]


# ---- scratch buffers ----

_SCRATCH: dict[tuple[str, str, torch.dtype], Tensor] = {}


def scratch(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, slot: str) -> Tensor:
    """A reusable temporary of `shape` (contents undefined), one per (slot, device, dtype).

    Why: on CPU, glibc hands blocks over 32 MB back to the OS on free, so every fresh 100 MB float32
    temporary pays its page faults again, which costs about as much as the arithmetic done in it. CUDA's
    caching allocator already reuses memory, so there this is a plain allocation. Never returned to callers
    (the aliasing contract is the comment above `_stack` in qc2c/kv/batched.py).
    """
    if device.type != "cpu":
        return torch.empty(shape, dtype=dtype, device=device)
    n = math.prod(shape)
    key = (slot, str(device), dtype)
    buf = _SCRATCH.get(key)
    if buf is None or buf.numel() < n:
        buf = _SCRATCH[key] = torch.empty(n, dtype=dtype, device=device)
    return buf[:n].view(shape)


# ---- scales ----


def store_scales(scale: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Round float32 scales UP to `dtype` so that stored × levels still covers the group's range.

    Used by the symmetric and `observer` int schemes, nf4 and fp8: their stored scales are those of every
    earlier result (an exactly representable scale gains one unit in the last place); `kivi` uses
    `store_nearest`.

    Returns (stored scales in `dtype`, the same values as float32). A zero or subnormal scale (zero or
    constant group) is lifted to the dtype's smallest normal so that no division gives NaN/Inf.
    """
    info = torch.finfo(dtype)
    scale = scale.clamp_min(info.tiny)
    if dtype != torch.float32:
        # nearest-`dtype` rounding of s·(1+eps) is >= s (relative spacing of normals <= eps)
        scale = scale * (1.0 + info.eps)
    stored = scale.to(dtype)
    if not bool(torch.isfinite(stored).all()):
        raise scale_overflow(dtype)
    return stored, stored.float()


def store_nearest(value: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """float32 per-group values (kivi's scales, floored at the dtype's smallest normal by the caller, and
    mins) rounded to the NEAREST `dtype` value, so an exactly representable value is stored exactly.

    Returns (stored in `dtype`, the same values as float32); a value `dtype` cannot hold is refused.
    """
    stored = value.to(dtype)
    if not bool(torch.isfinite(stored).all()):
        raise scale_overflow(dtype)
    return stored, stored.float()


def scale_overflow(dtype: torch.dtype) -> NonFiniteInput:
    """The refusal for a scale that `dtype` cannot hold (eager code and fused kernels raise the same words)."""
    return NonFiniteInput(f"a scale overflows {dtype} (|x| too large for this scale dtype; use scale_dtype: float32)")


def non_finite(what: str) -> NonFiniteInput:
    """The refusal for NaN/Inf input (eager code and fused kernels raise the same words)."""
    return NonFiniteInput(f"{what}: input holds NaN or Inf; refusing to encode it")


def scale_bytes(stored: Tensor, r: int) -> Tensor:
    return stored.reshape(r, -1).view(torch.uint8)


def load_scales(enc: Encoded, dtype: torch.dtype) -> Tensor:
    """(R, G) float32 scales from their bytes."""
    return enc.scales.view(dtype).float()


def check_finite(stat: Tensor, what: str) -> None:
    """Refuse NaN/Inf. Called on per-group statistics (small; NaN/Inf propagates into max/min)."""
    if not bool(torch.isfinite(stat).all()):
        raise non_finite(what)


def group_absmax(xg: Tensor, dim: int, what: str) -> Tensor:
    """max |x| per group as float32 (min and max are exact in any float dtype), refusing NaN/Inf input."""
    lo, hi = (t.float() for t in torch.aminmax(xg, dim=dim, keepdim=True))
    absmax = torch.maximum(-lo, hi)
    check_finite(absmax, what)
    return absmax


# ---- fused CPU kernels (qc2c.kv.kernels.cpu) for the float schemes ----

FUSED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def fused(t: Tensor, dtype: torch.dtype, n_elements: int) -> bool:
    """Whether a float scheme's encode/decode of `n_elements` of `t` into/from `dtype` runs the fused kernels."""
    return (
        t.device.type == "cpu"
        and t.dtype in (*FUSED_DTYPES, torch.uint8)
        and dtype in FUSED_DTYPES
        and kernels.active(t.device, n_elements)
    )


def group_geometry(grouping: Grouping, shape: tuple[int, ...]) -> tuple[int, int, int] | None:
    """One row of (L, H, n, D) = `shape` as (O, g, I): group (o, i) is the g elements at stride I from o·g·I,
    in the order of `Grouping.view`'s statistics; None where a ragged last group needs padding."""
    n_layers, n_heads, n_tokens, head_dim = shape
    if grouping.axis in ("token", "channel"):
        length = head_dim if grouping.axis == "token" else n_tokens
        g = min(grouping.group_size or length, length)
        if g == 0 or length % g:
            return None
        if grouping.axis == "token":
            return n_layers * n_heads * n_tokens * (head_dim // g), g, 1
        return n_layers * n_heads * (n_tokens // g), g, head_dim
    keep = {"head": 2, "layer": 1, "tensor": 0}[grouping.axis]
    return math.prod(shape[:keep]), math.prod(shape[keep:]), 1


def _kernel_geometry(scheme: Scheme, shape: tuple[int, ...], even: bool) -> tuple[int, int, int] | None:
    """`group_geometry`, or None where it is ragged, or (`even`: nf4's whole bytes) a group has an odd size."""
    geo = group_geometry(scheme.grouping, shape)
    return None if geo is None or (even and (geo[1] * geo[2]) % 2) else geo


def encode_scaled_fused(
    scheme: Scheme, x: Tensor | list[Tensor], kind: int, table: Tensor, even: bool = False
) -> Encoded | None:
    """fp8 (kind 0 e4m3fn, 1 e5m2) or nf4 (kind 2, `table` its midpoints, `even`) codes of x (R, L, H, n, D), or
    of its layers read in place, by the fused CPU kernels: the eager code's bytes; None where they do not apply."""
    layers = not isinstance(x, Tensor)
    x0 = x[0] if layers else x
    shape = (len(x), *x0.shape[1:]) if layers else tuple(x0.shape[1:])
    n_elements = x0.shape[0] * math.prod(shape)
    geo = _kernel_geometry(scheme, shape, even)
    if geo is None or n_elements == 0 or (layers and scheme.grouping.axis == "tensor" and len(x) > 1):
        return None
    if not fused(x0, x0.dtype, n_elements):
        return None
    codes, scales, flags = kernels.scaled_encode(x, geo, kind, scheme.scale_dtype == torch.float16, table)
    if flags & kernels.BAD_INPUT:
        raise non_finite(scheme.name)
    if flags & kernels.SCALE_OVERFLOW:
        raise scale_overflow(scheme.scale_dtype)
    return Encoded(codes, scales.view(torch.uint8), x0.new_zeros((x0.shape[0], 0), dtype=torch.uint8), shape)


def decode_scaled_fused(
    scheme: Scheme, enc: Encoded, dtype: torch.dtype, kind: int, table: Tensor, even: bool = False
) -> Tensor | None:
    """`encode_scaled_fused`'s inverse in `dtype` (table: the 256 fp8 byte values, or the 16 nf4 levels)."""
    r = enc.payload.shape[0]
    geo = _kernel_geometry(scheme, enc.shape, even)
    if geo is None or not fused(enc.payload, dtype, r * math.prod(enc.shape)):
        return None
    scales = enc.scales.contiguous().view(scheme.scale_dtype)  # the kernels read fp16 scales as float32
    return kernels.scaled_decode(enc.payload, scales, *geo, kind, table, dtype).view(r, *enc.shape)
