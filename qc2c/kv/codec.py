"""Codec = selection ∘ layout (precision plan or byte budget) ∘ schemes: the `MessagePath` of Quantized C2C.

`transmit(section)` selects each row's tokens, encodes the sharer KV of every sent sharer layer into one
`Message` per row (qc2c.kv.wire), decodes those messages back on the receiver's device/dtype and returns
them with per-row records. How a row's tokens and layers are split over schemes is the layout planner's
(qc2c.kv.layout). Rows whose messages share a layout (same token counts and segments) are encoded and
decoded together, all layers of a segment stacked, so a batch costs a handful of kernels per segment
instead of one per layer per row.

A row's message is the one it would send alone: its token positions are written as ranks among the row's
own fused tokens (`n_tokens` = how many it has), never as columns of the padded batch, whose width depends
on the other rows. The receiver maps ranks back to columns with its own fuse mask.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor

from qc2c.config import KVConfig
from qc2c.fuser.seam import KV, SectionKV, Transmitted
from qc2c.kv.batched import decode_messages, encode_rows
from qc2c.kv.budget import build_allocator
from qc2c.kv.layout import BudgetLayout, Layout, LayoutPlanner, PrecisionLayout, Shape, closed_form, drop_worst
from qc2c.kv.precision import PrecisionPlan, resolve_precision
from qc2c.kv.quant import SCHEMES, Scheme, build_kv_schemes
from qc2c.kv.selection import Selection, SelectionContext, Selector, build_selector
from qc2c.kv.uncompressed import fp16_message_nbytes
from qc2c.kv.wire import Message

__all__ = ["Codec", "Layout", "build_codec"]


@dataclass
class Codec:
    """Implements `qc2c.fuser.seam.MessagePath`. Build it with `build_codec`."""

    selector: Selector
    keep: float
    min_tokens: int
    plan: PrecisionPlan
    schemes: dict[str, tuple[Scheme, Scheme]]  # scheme name -> (key scheme, value scheme)
    planner: LayoutPlanner

    @property
    def needs_sharer_attention(self) -> bool:
        return self.selector.needs_sharer_attention

    def closed_form(self, layout: Layout, n_tokens: int, shape: Shape) -> dict[str, int]:
        """Bytes of a message with this layout by arithmetic alone (n_layers, n_heads, head_dim = shape)."""
        return closed_form(layout, n_tokens, shape, self.schemes)

    # ---- encode ----

    def encode(self, section: SectionKV) -> tuple[list[Message], Selection, list[Layout]]:
        """One message per row, the selection, and each row's layout. A message the planner does not let
        through (over a byte budget) loses its worst-ranked tokens one at a time until it fits."""
        sel = self.selector.select(SelectionContext(section), self.keep, self.min_tokens)
        k0 = section.sharer[0][0]
        shape = (len(section.sharer), k0.shape[1], k0.shape[3])
        n_valid = section.fuse_mask.bool().sum(1).tolist()
        rows = list(range(k0.shape[0]))
        sets = [self.planner.row_sets(sel, r, n_valid[r], shape) for r in rows]
        layouts = [self.planner.layout(s) for s in sets]
        messages = encode_rows(section, rows, sets, layouts, self.schemes)
        for r in rows:
            while not self.planner.fits(messages[r]):
                sets[r] = drop_worst(sets[r], sel.ranked[r])
                layouts[r] = self.planner.layout(sets[r])
                messages[r] = encode_rows(section, [r], sets, layouts, self.schemes)[r]
        return [messages[r] for r in rows], sel, layouts

    # ---- decode ----

    def decode(
        self,
        messages: list[Message],
        *,
        dtype: torch.dtype,
        device: torch.device | str,
        fuse_mask: Tensor | None = None,
    ) -> tuple[list[KV], Tensor]:
        """`decode_messages` (qc2c.kv.batched): any codec's messages decode alike, from their headers."""
        return decode_messages(messages, dtype=dtype, device=device, fuse_mask=fuse_mask)

    # ---- the message path ----

    def transmit(self, section: SectionKV) -> Transmitted:
        k0 = section.sharer[0][0]
        t0 = _clock(k0.device)
        messages, sel, layouts = self.encode(section)
        t1 = _clock(k0.device)
        sharer, kept = self.decode(messages, dtype=k0.dtype, device=k0.device, fuse_mask=section.fuse_mask)
        t2 = _clock(k0.device)
        b, n_heads, _, head_dim = k0.shape
        shape = (len(section.sharer), n_heads, head_dim)
        n_valid = section.fuse_mask.bool().sum(1).tolist()
        reference = fp16_message_nbytes(section)  # the c2c_fp16 message of the same tokens: the ratio's numerator
        records = [
            {
                "nbytes": m.nbytes,
                "nbytes_breakdown": m.breakdown,
                "n_tokens_sent": int(sum(layout.set_counts)),
                "n_tokens": int(n_valid[r]),
                "nbytes_fp16_sharer": 2 * 2 * n_valid[r] * shape[0] * n_heads * head_dim,
                "nbytes_fp16_message": sum(reference[r].values()),
                "nbytes_closed_form": sum(self.closed_form(layout, m.n_tokens, shape).values()),
                "encode_s": (t1 - t0) / b,
                "decode_s": (t2 - t1) / b,
                "sharer_layer_schemes": _sharer_view(layout),
                "n_tokens_per_scheme": {name: layout.set_counts[s] for name, _, s in layout.segments},
            }
            for r, (m, layout) in enumerate(zip(messages, layouts))
        ]
        projected = sel.projected if self._lossless(k0.dtype) else None
        return Transmitted(sharer=sharer, kept=kept, records=records, projected=projected)

    def _lossless(self, dtype: torch.dtype) -> bool:
        return all(dtype in SCHEMES.get(n).is_lossless_for for n in self.planner.scheme_names())


def _sharer_view(layout: Layout) -> dict[str, str]:
    """{sharer layer: the schemes it is sent at, most precise first, joined by '+'}."""
    view: dict[str, list[str]] = {}
    for name, layers, _ in layout.segments:
        for layer in layers:
            view.setdefault(str(layer), []).append(name)
    return {k: "+".join(sorted(v, key=lambda n: -SCHEMES.get(n).rank)) for k, v in view.items()}


def _clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def build_codec(kv: KVConfig, *, layer_map: dict[int, int], n_sharer_layers: int, n_receiver_layers: int) -> Codec:
    """The codec for a manifest's `kv` settings (checked by the schema) on a pair with these layer counts."""
    bad = [s for s in layer_map.values() if not 0 <= s < n_sharer_layers]
    if bad:
        raise ValueError(f"layer_map: sharer layers {bad} out of range (the sharer has {n_sharer_layers} layers)")
    plan = resolve_precision(
        kv.precision, scheme=kv.quant.scheme, layer_map=layer_map, n_receiver_layers=n_receiver_layers
    )
    levels = _budget_levels(kv.budget.candidates) if kv.budget is not None else ()
    schemes = {n: build_kv_schemes(n, kv.quant) for n in set(plan.sharer.values()) | set(levels)}
    planner: LayoutPlanner = PrecisionLayout(plan)
    if kv.budget is not None:
        allocator = build_allocator(kv.budget.allocator)
        planner = BudgetLayout(tuple(plan.sharer), levels, allocator, kv.budget.bytes_per_sample, schemes)
    return Codec(
        selector=build_selector(kv.selection),
        keep=kv.selection.keep,
        min_tokens=kv.selection.min_tokens,
        plan=plan,
        schemes=schemes,
        planner=planner,
    )


def _budget_levels(candidates: tuple[str, ...]) -> tuple[str, ...]:
    """A budget's candidates other than drop, ascending precision."""
    levels = tuple(sorted((c for c in candidates if c != "drop"), key=lambda n: SCHEMES.get(n).rank))
    if not levels:
        raise ValueError("kv.budget.candidates: needs at least one scheme besides drop")
    return levels
