"""The seam between sharer prefill and fusion, where the message path (selection → codec → message) plugs in.

The fused forward (`qc2c.fuser.fuse`) knows nothing about quantization; the KV codec (`qc2c.kv.codec`)
knows nothing about sections or caches. They meet here: for every fused section the forward hands a
`SectionKV` to a `MessagePath`, which returns what the receiver gets after the sharer's KV went over the
wire (`Transmitted`). With no message path, the forward fuses the sharer's KV as is (uncompressed C2C).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from torch import Tensor

KV = tuple[Tensor, Tensor]


@dataclass
class SectionKV:
    """One fused section of a batch, as the sender and the receiver see it.

    Shapes: sharer[l] = (K, V) each (B, H_s, N, D_s), post-RoPE, for EVERY sharer layer l;
    receiver[t] = (K, V) each (B, H_r, N, D_r) for every receiver layer t (only needed by receiver-aware
    selectors such as `delta`; the codec must not send it). N = section length.
    """

    sharer: list[KV]
    receiver: list[KV]
    fuse_mask: Tensor  # (B, N) bool: positions this row wants fused (False on padding / template tokens)
    layer_map: dict[int, int]  # receiver layer -> sharer layer (last_aligned)
    project: Callable[[int, KV, KV], KV]  # project(t, sharer_kv, receiver_kv) with receiver layer t's projector
    sharer_attention: list[Tensor] | None = None  # per sharer layer (B, H_q, N, N_total) when a selector asks
    section_start: int = 0  # absolute position of the section's first token
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class Transmitted:
    """What the receiver reconstructs from the message for one section.

    sharer[l]: decoded (K, V) (B, H_s, N, D_s) on the receiver's device/dtype; values at positions not
    kept are arbitrary (they are never fused). kept: (B, N) bool, the positions that were sent and must be
    fused (sparse fuse); the receiver keeps its own KV everywhere else. projected: optional
    {receiver layer: fused (K, V)} already computed by a receiver-aware selector, reused by the fuse step.
    records: per-row dicts (bytes, breakdown, tokens sent, timing) that evaluation stores per sample.
    """

    sharer: list[KV]
    kept: Tensor
    records: list[dict[str, Any]]
    projected: dict[int, KV] | None = None


class MessagePath(Protocol):
    """Turns a section's sharer KV into what the receiver reconstructs (select, encode, pack, decode)."""

    needs_sharer_attention: bool

    def transmit(self, section: SectionKV) -> Transmitted: ...
