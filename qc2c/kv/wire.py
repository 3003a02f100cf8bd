"""The message: one row's selected, quantized sharer KV as uint8 buffers, with exact bytes.

Layout of `to_bytes()` (little-endian):
  header   "QC2K" u8 version | u32 T | u16 L | u16 H | u16 D | u8 n_sets | u8 n_segments        (17 B)
           per token set:  u8 index kind (0 uint16, 1 uint32, 2 bitmap) | u32 count            (5 B)
           per segment:    u8 len + scheme name | u8 set | layer bitmap ceil(L/8) B |
                           per half (K, V): u8 axis | u32 group_size (0 = whole) | u8 mode | u8 scale dtype
  body     per token set: its indices; per segment: K payload, K scales, K offsets, V payload, …
The mode byte is 0 asymmetric `observer`, 1 symmetric, 2 asymmetric `kivi` (0/1 are the former "symmetric"
flag, so messages written before the kivi convention read back as what they were). K offsets are one
uint8 zero point per group (observer), one scale-dtype min per group (kivi) or nothing.
T is the row's count of fused tokens in the section (the index space: a position is the token's rank among
them, so a row's message never depends on the padding of the batch it was sent in), L the sharer's layer
count, H×D its KV heads × head_dim. A token set is a sorted list of positions, written as uint16
(T < 65,536) or uint32, or as a T-bit bitmap when that is smaller; a segment is one scheme applied to some
sharer layers at one token set.
Every body size follows from the header, so `from_bytes` needs no lengths, and `nbytes` (the sum of the
buffers actually held) equals `closed_form_nbytes` (arithmetic on the layout) equals `len(to_bytes())`.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from qc2c.kv.grouping import AXES, Shape
from qc2c.kv.quant import Encoded, Scheme, build_scheme, pack, unpack
from qc2c.kv.schemes.base import SCALE_DTYPES

MAGIC, VERSION = b"QC2K", 1
_HEAD = struct.Struct("<4sBIHHHBB")
_SET = struct.Struct("<BI")
_HALF = struct.Struct("<BIBB")
INDEX_KINDS = ("uint16", "uint32", "bitmap")
_SCALE_IDS = tuple(SCALE_DTYPES)
# mode byte -> (convention, symmetric); a symmetric scheme has no convention and reads back with the default
_MODES = (("observer", False), ("kivi", True), ("kivi", False))


class WireError(ValueError):
    """Bytes that are not a well-formed qc2c message."""


# ---- token indices ----


def index_kind(n_sent: int, n_tokens: int) -> str:
    """The smaller encoding of n_sent positions out of n_tokens (lists win ties)."""
    as_list = ("uint16", 2 * n_sent) if n_tokens < 65536 else ("uint32", 4 * n_sent)
    return as_list[0] if as_list[1] <= math.ceil(n_tokens / 8) else "bitmap"


def index_nbytes(n_sent: int, n_tokens: int) -> int:
    """Closed form of the index bytes for one token set."""
    list_bytes = 2 * n_sent if n_tokens < 65536 else 4 * n_sent
    return min(list_bytes, math.ceil(n_tokens / 8))


def encode_indices(indices: Tensor, n_tokens: int) -> tuple[str, Tensor]:
    """Sorted unique int64 positions -> (kind, uint8 bytes), on the indices' device."""
    return encode_index_rows([indices], n_tokens)[0]


def encode_index_rows(rows: list[Tensor], n_tokens: int | Sequence[int]) -> list[tuple[str, Tensor]]:
    """`encode_indices` of many rows' positions (`n_tokens`: one index space, or one per row), with every
    bitmap row packed in one call (a batch of full selections would otherwise pay one small pack per row,
    which costs more than the rows' quantization)."""
    spans = [n_tokens] * len(rows) if isinstance(n_tokens, int) else list(n_tokens)
    out: list[tuple[str, Tensor] | None] = []
    for idx, span in zip(rows, spans):
        kind = index_kind(idx.numel(), span)
        if kind == "bitmap" and idx.numel() == span:  # every position (sorted, unique): all bits set
            out.append(("bitmap", _full_bitmap(span, idx.device)))
            continue
        if kind == "bitmap":
            out.append(None)
            continue
        width = 2 if kind == "uint16" else 4
        shifts = torch.arange(0, 8 * width, 8, device=idx.device)
        out.append((kind, ((idx.unsqueeze(-1) >> shifts) & 255).to(torch.uint8).reshape(-1)))
    bitmap_rows = [r for r, o in enumerate(out) if o is None]
    if bitmap_rows:
        picked = [rows[r] for r in bitmap_rows]
        counts = torch.tensor([idx.numel() for idx in picked], device=picked[0].device)
        row_of = torch.repeat_interleave(torch.arange(len(picked), device=counts.device), counts)
        width = max(spans[r] for r in bitmap_rows)
        mask = torch.zeros(len(picked), width, dtype=torch.uint8, device=picked[0].device)
        mask[row_of, torch.cat(picked)] = 1
        packed = pack(mask, 1)
        for j, r in enumerate(bitmap_rows):  # a row's bitmap is the first ceil(T/8) bytes of its packed mask
            out[r] = ("bitmap", packed[j, : math.ceil(spans[r] / 8)])
    return out  # type: ignore[return-value]


def _full_bitmap(n_tokens: int, device: torch.device) -> Tensor:
    """`pack` of n_tokens set bits: whole bytes 0xFF, then the low n_tokens % 8 bits of the last byte."""
    out = torch.full((math.ceil(n_tokens / 8),), 255, dtype=torch.uint8, device=device)
    if n_tokens % 8:
        out[-1] = (1 << (n_tokens % 8)) - 1
    return out


def decode_indices(kind: str, data: Tensor, count: int, n_tokens: int) -> Tensor:
    if kind == "bitmap":  # the set bits, whatever `count` says
        return unpack(data.view(1, -1), 1, n_tokens)[0].nonzero().reshape(-1)
    return decode_index_rows(kind, [data], count, n_tokens)[0]


def decode_index_rows(kind: str, data: list[Tensor], count: int, n_tokens: int | Sequence[int]) -> Tensor:
    """Rows that all sent `count` positions in the same encoding -> their positions (R, count), decoded at once
    (`n_tokens`: one index space, or one per row; shorter bitmaps are zero-extended, which adds no position)."""
    width = n_tokens if isinstance(n_tokens, int) else max(n_tokens)
    flat = [d.reshape(-1) for d in data]
    size = max(d.numel() for d in flat)
    stacked = torch.stack([d if d.numel() == size else torch.nn.functional.pad(d, (0, size - d.numel())) for d in flat])
    if kind == "bitmap":
        return unpack(stacked, 1, width).nonzero()[:, 1].view(len(data), count)
    width = 2 if kind == "uint16" else 4
    shifts = torch.arange(0, 8 * width, 8, device=stacked.device)
    return (stacked.view(len(data), count, width).long() << shifts).sum(-1)


# ---- message ----


@dataclass
class Segment:
    """One scheme over some sharer layers at one token set; key/value are single-row `Encoded`."""

    key_scheme: Scheme
    value_scheme: Scheme
    token_set: int
    layers: tuple[int, ...]
    key: Encoded
    value: Encoded

    def buffers(self) -> list[Tensor]:
        return [t.reshape(-1) for e in (self.key, self.value) for t in (e.payload, e.scales, e.zeros)]


@dataclass
class Message:
    """One row's message. Invariant: nbytes == closed_form_nbytes(...) == len(to_bytes())."""

    n_tokens: int
    n_layers: int
    n_heads: int
    head_dim: int
    index_kinds: list[str]
    index_counts: list[int]
    index_data: list[Tensor]
    segments: list[Segment]

    def header(self) -> bytes:
        parts = [
            _HEAD.pack(
                MAGIC,
                VERSION,
                self.n_tokens,
                self.n_layers,
                self.n_heads,
                self.head_dim,
                len(self.index_kinds),
                len(self.segments),
            )
        ]
        parts += [_SET.pack(INDEX_KINDS.index(k), c) for k, c in zip(self.index_kinds, self.index_counts)]
        for seg in self.segments:
            name = seg.key_scheme.name.encode()
            mask = torch.zeros(1, self.n_layers, dtype=torch.uint8)
            mask[0, list(seg.layers)] = 1
            parts += [bytes([len(name)]), name, bytes([seg.token_set]), pack(mask, 1).numpy().tobytes()]
            parts += [_half(seg.key_scheme), _half(seg.value_scheme)]
        return b"".join(parts)

    @property
    def breakdown(self) -> dict[str, int]:
        payload = sum(e.payload.numel() for s in self.segments for e in (s.key, s.value))
        scales = sum(e.scales.numel() + e.zeros.numel() for s in self.segments for e in (s.key, s.value))
        indices = sum(d.numel() for d in self.index_data)
        return {"payload": payload, "scales": scales, "indices": indices, "header": len(self.header())}

    @property
    def nbytes(self) -> int:
        return sum(self.breakdown.values())

    def to_bytes(self) -> bytes:
        """The explicit host step: one device->host copy of every body buffer."""
        body = [d.reshape(-1) for d in self.index_data] + [b for s in self.segments for b in s.buffers()]
        body = [b for b in body if b.numel()]
        return self.header() + (torch.cat(body).cpu().numpy().tobytes() if body else b"")

    @classmethod
    def from_bytes(cls, data: bytes, device: torch.device | str = "cpu") -> Message:
        view = memoryview(data)
        if len(data) < _HEAD.size:
            raise WireError(f"message too short ({len(data)} bytes)")
        magic, version, n_tokens, n_layers, n_heads, head_dim, n_sets, n_segments = _HEAD.unpack_from(view, 0)
        if magic != MAGIC or version != VERSION:
            raise WireError(f"not a qc2c message (magic {magic!r}, version {version})")
        pos = _HEAD.size
        kinds, counts = [], []
        for _ in range(n_sets):
            kind, count = _SET.unpack_from(view, pos)
            kinds.append(INDEX_KINDS[kind])
            counts.append(count)
            pos += _SET.size
        heads = []
        for _ in range(n_segments):
            name = bytes(view[pos + 1 : pos + 1 + view[pos]]).decode()
            pos += 1 + len(name)
            token_set = view[pos]
            pos += 1
            nb = math.ceil(n_layers / 8)
            bits = unpack(torch.frombuffer(bytearray(view[pos : pos + nb]), dtype=torch.uint8).view(1, -1), 1, n_layers)
            pos += nb
            layers = tuple(int(i) for i in bits[0].nonzero().reshape(-1))
            key, pos = _read_half(name, view, pos)
            value, pos = _read_half(name, view, pos)
            heads.append((key, value, token_set, layers))
        body = torch.frombuffer(bytearray(view[pos:]), dtype=torch.uint8).to(device) if len(data) > pos else None
        cursor = 0

        def take(n: int) -> Tensor:
            nonlocal cursor
            if n and (body is None or cursor + n > body.numel()):
                raise WireError("message body is truncated")
            # a copy, so that every buffer starts aligned (scales and raw floats are viewed as wider dtypes)
            out = body[cursor : cursor + n].clone() if n else torch.zeros(0, dtype=torch.uint8, device=device)
            cursor += n
            return out

        index_data = [take(index_nbytes(c, n_tokens)) for c in counts]
        segments = []
        for key_scheme, value_scheme, token_set, layers in heads:
            shape = (len(layers), n_heads, counts[token_set], head_dim)
            key = _read_encoded(key_scheme, shape, take)
            value = _read_encoded(value_scheme, shape, take)
            segments.append(Segment(key_scheme, value_scheme, token_set, layers, key, value))
        if body is not None and cursor != body.numel():
            raise WireError(f"{body.numel() - cursor} trailing bytes after the message body")
        return cls(n_tokens, n_layers, n_heads, head_dim, kinds, counts, index_data, segments)

    def token_indices(self) -> list[Tensor]:
        return [
            decode_indices(k, d, c, self.n_tokens)
            for k, c, d in zip(self.index_kinds, self.index_counts, self.index_data)
        ]


def _half(scheme: Scheme) -> bytes:
    g = scheme.grouping
    scale_id = _SCALE_IDS.index(next(k for k, v in SCALE_DTYPES.items() if v == scheme.scale_dtype))
    mode = 1 if scheme.symmetric else _MODES.index((scheme.convention, False))
    return _HALF.pack(AXES.index(g.axis), g.group_size or 0, mode, scale_id)


def _read_half(name: str, view: memoryview, pos: int) -> tuple[Scheme, int]:
    axis, group_size, mode, scale_id = _HALF.unpack_from(view, pos)
    if mode >= len(_MODES):
        raise WireError(f"unknown quantizer mode {mode} (allowed: 0 observer, 1 symmetric, 2 kivi)")
    convention, symmetric = _MODES[mode]
    scheme = build_scheme(
        name,
        axis=AXES[axis],
        group_size=group_size or None,
        symmetric=symmetric,
        scale_dtype=_SCALE_IDS[scale_id],
        convention=convention,
    )
    return scheme, pos + _HALF.size


def _read_encoded(scheme: Scheme, shape: Shape, take) -> Encoded:
    sizes = scheme.nbytes(shape)
    n_zeros = scheme.grouping.n_groups(shape) * scheme.zero_bytes()
    payload = take(sizes["payload"]).view(1, -1)
    scales = take(sizes["scales"] - n_zeros).view(1, -1)
    zeros = take(n_zeros).view(1, -1)
    return Encoded(payload, scales, zeros, shape)


def header_nbytes(n_layers: int, n_sets: int, scheme_names: list[str]) -> int:
    """Closed form of the header size."""
    per_segment = [1 + len(n.encode()) + 1 + math.ceil(n_layers / 8) + 2 * _HALF.size for n in scheme_names]
    return _HEAD.size + n_sets * _SET.size + sum(per_segment)


def closed_form_nbytes(
    *,
    n_tokens: int,
    n_layers: int,
    n_heads: int,
    head_dim: int,
    set_counts: list[int],
    segments: list[tuple[Scheme, Scheme, int, int]],
) -> dict[str, int]:
    """Bytes of a message from its layout alone; segments: (key scheme, value scheme, n_layers, token set)."""
    payload = scales = 0
    for key_scheme, value_scheme, seg_layers, token_set in segments:
        shape = (seg_layers, n_heads, set_counts[token_set], head_dim)
        for scheme in (key_scheme, value_scheme):
            sizes = scheme.nbytes(shape)
            payload += sizes["payload"]
            scales += sizes["scales"]
    return {
        "payload": payload,
        "scales": scales,
        "indices": sum(index_nbytes(c, n_tokens) for c in set_counts),
        "header": header_nbytes(n_layers, len(set_counts), [s[0].name for s in segments]),
    }
