"""Codec = selection ∘ precision plan (or byte budget) ∘ schemes: the `MessagePath` of Quantized C2C.

`transmit(section)` selects each row's tokens, encodes the sharer KV of every sent sharer layer into one
`Message` per row (qc2c.kv.wire), decodes those messages back on the receiver's device/dtype and returns
them with per-row records. Rows whose messages share a layout (same token counts and segments) are
encoded and decoded together, all layers of a segment stacked, so a batch costs a handful of kernels per
segment instead of one per layer per row.

A row's message is the one it would send alone: its token positions are written as ranks among the row's
own fused tokens (`n_tokens` = how many it has), never as columns of the padded batch, whose width depends
on the other rows. The receiver maps ranks back to columns with its own fuse mask.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from qc2c.fuser.seam import KV, SectionKV, Transmitted
from qc2c.kv.budget import Allocator, build_allocator
from qc2c.kv.precision import PrecisionPlan, resolve_precision
from qc2c.kv.quant import SCHEMES, Encoded, Scheme, build_kv_schemes
from qc2c.kv.schemes.base import scratch
from qc2c.kv.selection import Selection, SelectionContext, Selector, build_selector
from qc2c.kv.uncompressed import fp16_message_nbytes
from qc2c.kv.wire import Message, Segment, closed_form_nbytes, decode_index_rows, encode_index_rows

QUANT_DEFAULTS = {"scheme": "int8", "symmetric": False, "key_axis": "channel", "value_axis": "token",
                  "group_size": 64, "scale_dtype": "float16", "convention": "kivi"}  # fmt: skip
SELECTION_DEFAULTS = {"method": "all", "keep": 1.0, "min_tokens": 1, "knorm_sign": "low", "window": 8, "seed": 0}


@dataclass(frozen=True)
class Layout:
    """One row's message shape: token counts per set and segments (scheme, sharer layers, token set)."""

    set_counts: tuple[int, ...]
    segments: tuple[tuple[str, tuple[int, ...], int], ...]


@dataclass
class Codec:
    """Implements `qc2c.fuser.seam.MessagePath`. Build it with `build_codec`."""

    selector: Selector
    keep: float
    min_tokens: int
    plan: PrecisionPlan
    schemes: dict[str, tuple[Scheme, Scheme]]  # scheme name -> (key scheme, value scheme)
    allocator: Allocator | None = None
    bytes_per_sample: int | None = None
    levels: tuple[str, ...] = ()  # budget candidates other than drop, ascending precision

    @property
    def needs_sharer_attention(self) -> bool:
        return self.selector.needs_sharer_attention

    # ---- layout ----

    def _row_sets(self, sel: Selection, r: int, n_tokens: int, shape: tuple[int, int, int]) -> list[tuple[str, Tensor]]:
        """Row r's token sets as (scheme, positions): the selection at every planned scheme (name ""), or
        the budget's split of it over levels, best-ranked tokens at the most precise level; empty sets dropped."""
        if self.allocator is None:
            return [("", sel.indices[r])]
        counts = self.allocator.allocate(sel.n_sent[r], len(self.levels), lambda c: self._cost(c, n_tokens, shape),
                                         self.bytes_per_sample)  # fmt: skip
        sets, start = [], 0
        for name, count in reversed(list(zip(self.levels, counts))):
            sets.append((name, sel.ranked[r][start : start + count].sort().values))
            start += count
        return [(name, idx) for name, idx in sets[::-1] if idx.numel()]

    def _layout(self, sets: list[tuple[str, Tensor]]) -> Layout:
        counts = tuple(idx.numel() for _, idx in sets)
        if self.allocator is None:
            return Layout(counts, tuple((name, tuple(layers), 0) for name, layers in self.plan.groups().items()))
        layers = tuple(self.plan.sharer)
        return Layout(counts, tuple((name, layers, i) for i, (name, _) in enumerate(sets)))

    def _cost(self, counts: tuple[int, ...], n_tokens: int, shape: tuple[int, int, int]) -> int:
        live = [(name, c) for name, c in zip(self.levels, counts) if c]
        layout = Layout(
            tuple(c for _, c in live), tuple((n, tuple(self.plan.sharer), i) for i, (n, _) in enumerate(live))
        )
        return sum(self.closed_form(layout, n_tokens, shape).values())

    def closed_form(self, layout: Layout, n_tokens: int, shape: tuple[int, int, int]) -> dict[str, int]:
        """Bytes of a message with this layout by arithmetic alone (n_layers, n_heads, head_dim = shape)."""
        n_layers, n_heads, head_dim = shape
        segments = [(*self.schemes[name], len(layers), s) for name, layers, s in layout.segments]
        return closed_form_nbytes(n_tokens=n_tokens, n_layers=n_layers, n_heads=n_heads, head_dim=head_dim,
                                  set_counts=list(layout.set_counts), segments=segments)  # fmt: skip

    # ---- encode ----

    def encode(self, section: SectionKV) -> tuple[list[Message], Selection, list[Layout]]:
        ctx = SelectionContext(section)
        sel = self.selector.select(ctx, self.keep, self.min_tokens)
        k0 = section.sharer[0][0]
        b, n_heads, n, head_dim = k0.shape
        shape = (len(section.sharer), n_heads, head_dim)
        n_valid = section.fuse_mask.bool().sum(1).tolist()
        sets = [self._row_sets(sel, r, n_valid[r], shape) for r in range(b)]
        layouts = [self._layout(s) for s in sets]
        messages: list[Message | None] = [None] * b
        self._encode_rows(section, list(range(b)), sets, layouts, messages)
        if self.bytes_per_sample is not None:
            self._enforce_budget(section, sel, sets, layouts, messages)
        return messages, sel, layouts  # type: ignore[return-value]

    def _encode_rows(self, section, rows, sets, layouts, messages) -> None:
        groups: dict[Layout, list[int]] = {}
        for r in rows:
            groups.setdefault(layouts[r], []).append(r)
        stacks: dict[tuple, Tensor] = {}
        valid = section.fuse_mask.bool()
        rank = valid.long().cumsum(1) - 1  # (B, N): a fused position's rank among its row's fused positions
        n_valid = valid.sum(1).tolist()
        b, n_cache = section.sharer[0][0].shape[0], section.sharer[0][0].shape[2]
        for layout, members in groups.items():
            by_set = [
                encode_index_rows([rank[r, sets[r][s][1]] for r in members], [n_valid[r] for r in members])
                for s in range(len(sets[members[0]]))
            ]
            index_data = {r: [column[i] for column in by_set] for i, r in enumerate(members)}
            encoded = []
            for name, layers, set_id in layout.segments:
                tokens = torch.stack([sets[r][set_id][1] for r in members])
                pair = []
                whole = len(members) == b and tokens.shape[1] == n_cache and _is_arange(tokens)
                for h, scheme in enumerate(self.schemes[name]):
                    per_layer = [section.sharer[i][h] for i in layers]
                    enc = scheme.encode_layers(per_layer) if whole else None
                    if enc is None:
                        key = (layers, h)
                        if key not in stacks:
                            stacks[key] = _stack(per_layer, f"stack{len(stacks)}")
                        enc = _encode(scheme, stacks[key] if whole else _gather(stacks[key], members, tokens))
                    pair.append(enc)
                encoded.append(tuple(pair))
            for i, r in enumerate(members):
                segs = [Segment(*self.schemes[name], set_id, layers, k.row(i), v.row(i))
                        for (name, layers, set_id), (k, v) in zip(layout.segments, encoded)]  # fmt: skip
                kinds = [kind for kind, _ in index_data[r]]
                data = [d for _, d in index_data[r]]
                k0 = section.sharer[0][0]
                messages[r] = Message(n_valid[r], len(section.sharer), k0.shape[1], k0.shape[3], kinds,
                                      list(layout.set_counts), data, segs)  # fmt: skip

    def _enforce_budget(self, section, sel, sets, layouts, messages) -> None:
        """Measure the packed message; drop the worst-ranked tokens of a row until it fits (never over)."""
        for r, message in enumerate(messages):
            while message.nbytes > self.bytes_per_sample:
                worst = sel.ranked[r][sum(idx.numel() for _, idx in sets[r]) - 1]
                sets[r] = [(name, idx[idx != worst]) for name, idx in sets[r]]
                sets[r] = [(name, idx) for name, idx in sets[r] if idx.numel()]
                layouts[r] = self._layout(sets[r])
                self._encode_rows(section, [r], sets, layouts, messages)
                message = messages[r]

    # ---- decode ----

    def decode(
        self, messages: list[Message], *, dtype: torch.dtype, device: torch.device | str,
        fuse_mask: Tensor | None = None,
    ) -> tuple[list[KV], Tensor]:  # fmt: skip
        """Messages of a batch -> per sharer layer (K, V) each (B, H, N, D) on device/dtype, and kept (B, N).

        fuse_mask (B, N): each row's fused columns, which turn the message's ranks back into columns (row r's
        k-th fused column); None: rows are unpadded, rank k is column k and N is the longest message's n_tokens.
        """
        m0 = messages[0]
        counts = torch.tensor([m.n_tokens for m in messages])
        if fuse_mask is None:
            fuse_mask = torch.arange(int(counts.max()))[None] < counts[:, None]
        fuse_mask = fuse_mask.to(device).bool()
        if not torch.equal(fuse_mask.sum(1).cpu(), counts):
            raise ValueError(f"messages of {counts.tolist()} tokens for rows with {fuse_mask.sum(1).tolist()} fused")
        columns = torch.sort((~fuse_mask).to(torch.uint8), dim=1, stable=True).indices  # rank -> column
        b, shape = len(messages), (m0.n_layers, m0.n_heads, fuse_mask.shape[1], m0.head_dim)
        out: list[Tensor | None] = [None, None]
        kept = torch.zeros(b, fuse_mask.shape[1], dtype=torch.bool, device=device)
        groups: dict[Any, list[int]] = {}
        for r, m in enumerate(messages):
            key = (
                tuple(zip(m.index_kinds, m.index_counts)),
                tuple((s.key_scheme, s.value_scheme, s.layers, s.token_set) for s in m.segments),
            )
            groups.setdefault(key, []).append(r)
        for members in groups.values():
            first, rows = messages[members[0]], torch.tensor(members, device=device).unsqueeze(1)
            spans = [messages[r].n_tokens for r in members]
            tokens = [
                columns[rows.squeeze(1)].gather(
                    1, decode_index_rows(kind, [messages[r].index_data[s] for r in members], count, spans).to(device)
                )
                for s, (kind, count) in enumerate(zip(first.index_kinds, first.index_counts))
            ]
            for idx in tokens:
                kept[rows, idx] = True
            for j, seg in enumerate(first.segments):
                idx = tokens[seg.token_set]
                for h, scheme in ((0, seg.key_scheme), (1, seg.value_scheme)):
                    enc = _cat_rows([(messages[r].segments[j].key, messages[r].segments[j].value)[h] for r in members])
                    values = _decode(scheme, enc.to(device), dtype)
                    if out[h] is None and values.shape == (b, *shape) and _is_arange(idx):
                        out[h] = values  # every row, layer and token: no scatter
                        continue
                    if out[h] is None:
                        out[h] = torch.zeros(b, *shape, dtype=dtype, device=device)
                    _scatter(out[h], members, seg.layers, idx, values)
        for h in (0, 1):
            if out[h] is None:
                out[h] = torch.zeros(b, *shape, dtype=dtype, device=device)
        return [(out[0][:, i], out[1][:, i]) for i in range(m0.n_layers)], kept

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
        records = []
        reference = fp16_message_nbytes(section)  # the c2c_fp16 message of the same tokens: the ratio's numerator
        for r, (m, layout) in enumerate(zip(messages, layouts)):
            fp16 = 2 * 2 * n_valid[r] * shape[0] * n_heads * head_dim
            per_scheme = {name: layout.set_counts[s] for name, _, s in layout.segments}
            records.append({
                "nbytes": m.nbytes, "nbytes_breakdown": m.breakdown, "n_tokens_sent": int(sum(layout.set_counts)),
                "n_tokens": int(n_valid[r]), "nbytes_fp16_sharer": fp16,
                "nbytes_fp16_message": sum(reference[r].values()),
                "nbytes_closed_form": sum(self.closed_form(layout, m.n_tokens, shape).values()),
                "encode_s": (t1 - t0) / b, "decode_s": (t2 - t1) / b,
                "sharer_layer_schemes": self._sharer_view(layout), "n_tokens_per_scheme": per_scheme,
            })  # fmt: skip
        projected = sel.projected if self._lossless(k0.dtype) else None
        return Transmitted(sharer=sharer, kept=kept, records=records, projected=projected)

    def _sharer_view(self, layout: Layout) -> dict[str, str]:
        view: dict[str, list[str]] = {}
        for name, layers, _ in layout.segments:
            for layer in layers:
                view.setdefault(str(layer), []).append(name)
        return {k: "+".join(sorted(v, key=lambda n: -SCHEMES.get(n).rank)) for k, v in view.items()}

    def _lossless(self, dtype: torch.dtype) -> bool:
        names = self.levels if self.allocator is not None else tuple(self.plan.groups())
        return all(dtype in SCHEMES.get(n).is_lossless_for for n in names)


def _stack(layers: list[Tensor], slot: str) -> Tensor:
    """Per-layer (B, H, N, D) -> (B, L, H, N, D) in the cache's own dtype, into a reused scratch buffer
    (schemes read it and copy what they keep, so it never escapes an encode call)."""
    first = layers[0]
    shape = (first.shape[0], len(layers), *first.shape[1:])
    return _stack_into(layers, scratch(shape, first.dtype, first.device, slot), dim=1)


def _stack_into(parts: list[Tensor], out: Tensor, dim: int) -> Tensor:
    """torch.stack(parts, dim, out=out): one kernel on GPU, a copy per part on CPU, where torch.stack/cat took
    a slow path (up to 25x a memcpy of the same bytes)."""
    if out.device.type != "cpu":
        return torch.stack(parts, dim=dim, out=out)
    for i, part in enumerate(parts):
        out.select(dim, i).copy_(part)
    return out


def _encode(scheme: Scheme, x: Tensor) -> Encoded:
    if x.numel() == 0:  # a row that sends no tokens
        empty = x.new_zeros((x.shape[0], 0), dtype=torch.uint8)
        return Encoded(empty, empty, empty, tuple(x.shape[1:]))
    return scheme.encode(x)


def _decode(scheme: Scheme, enc: Encoded, dtype: torch.dtype) -> Tensor:
    if enc.payload.numel() == 0:
        return torch.zeros(enc.payload.shape[0], *enc.shape, dtype=dtype, device=enc.payload.device)
    return scheme.decode(enc, dtype)


def _gather(stack: Tensor, rows: list[int], tokens: Tensor) -> Tensor:
    """(B, L, H, N, D) stack -> (R, L, H, n, D) at the rows' token positions (the caller skips it when the
    rows and positions are all of the stack)."""
    n_layers, n_heads = stack.shape[1], stack.shape[2]
    r_idx = torch.tensor(rows, device=stack.device)[:, None, None, None]
    l_idx = torch.arange(n_layers, device=stack.device)[None, :, None, None]
    h_idx = torch.arange(n_heads, device=stack.device)[None, None, :, None]
    return stack[r_idx, l_idx, h_idx, tokens[:, None, None, :]]


def _is_arange(tokens: Tensor) -> bool:
    """(R, n) positions are 0..n-1 in every row (sorted unique positions: the last one is n-1)."""
    return tokens.numel() == 0 or bool((tokens[:, -1] == tokens.shape[1] - 1).all())


def _scatter(out: Tensor, rows: list[int], layers: tuple[int, ...], tokens: Tensor, values: Tensor) -> None:
    device = out.device
    r_idx = torch.tensor(rows, device=device)[:, None, None, None]
    l_idx = torch.tensor(layers, device=device)[None, :, None, None]
    h_idx = torch.arange(out.shape[2], device=device)[None, None, :, None]
    out.index_put_((r_idx, l_idx, h_idx, tokens[:, None, None, :]), values)


def _cat_rows(encs: list[Encoded]) -> Encoded:
    """Row messages of one layout -> one R-row Encoded (without a copy when they are rows of one buffer)."""
    if len(encs) == 1:
        return encs[0]
    rows = [_rows_in_place([getattr(e, f) for e in encs]) for f in ("payload", "scales", "zeros")]
    if all(r is not None for r in rows):
        return Encoded(*rows, encs[0].shape)  # type: ignore[arg-type]
    parts = []
    for field_name in ("payload", "scales", "zeros"):
        rows_of_field = [getattr(e, field_name)[0] for e in encs]
        out = rows_of_field[0].new_empty((len(encs), *rows_of_field[0].shape))
        parts.append(_stack_into(rows_of_field, out, dim=0))
    return Encoded(*parts, encs[0].shape)


def _rows_in_place(parts: list[Tensor]) -> Tensor | None:
    """(1, P) rows that are consecutive rows of one buffer (messages of one encode call) -> that (R, P) buffer
    without a copy; None where they are not (messages read from bytes, or rows of different batches)."""
    first = parts[0]
    if first.dim() != 2 or first.shape[0] != 1 or (first.shape[1] > 1 and first.stride(1) != 1):
        return None
    if first.numel() == 0:
        return first.new_empty((len(parts), first.shape[1]))
    step, base = first.shape[1] * first.element_size(), first.data_ptr()
    storage = first.untyped_storage().data_ptr()
    for r, part in enumerate(parts):
        if (part.shape != first.shape or part.dtype != first.dtype or part.device != first.device
                or part.untyped_storage().data_ptr() != storage or part.data_ptr() != base + r * step
                or (part.shape[1] > 1 and part.stride(1) != 1)):  # fmt: skip
            return None
    return first.as_strided((len(parts), first.shape[1]), (first.shape[1], 1))


def _clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def build_codec(
    kv: Mapping[str, Any], *, layer_map: dict[int, int], n_sharer_layers: int, n_receiver_layers: int
) -> Codec:
    """The codec for a manifest `kv` section (plain dict, keys per docs/manifest.md; missing keys = defaults)."""
    quant = {**QUANT_DEFAULTS, **(kv.get("quant") or {})}
    selection = {**SELECTION_DEFAULTS, **(kv.get("selection") or {})}
    keep = float(selection["keep"])
    if not 0 < keep <= 1:
        raise ValueError(f"kv.selection.keep: {keep} is not in (0, 1] (the fraction of prompt tokens KEPT)")
    if selection["method"] == "all" and keep != 1.0:
        raise ValueError(
            f"kv.selection.keep: {keep} with method 'all' (all keeps every token; use keep: 1.0 or a method)"
        )
    bad = [s for s in layer_map.values() if not 0 <= s < n_sharer_layers]
    if bad:
        raise ValueError(f"layer_map: sharer layers {bad} out of range (the sharer has {n_sharer_layers} layers)")
    plan = resolve_precision(kv.get("precision"), scheme=quant["scheme"], layer_map=layer_map,
                             n_receiver_layers=n_receiver_layers)  # fmt: skip
    budget = kv.get("budget")
    levels: tuple[str, ...] = ()
    if budget:
        candidates = list(budget.get("candidates") or ["drop", "int4", "int8"])
        levels = tuple(sorted((c for c in candidates if c != "drop"), key=lambda n: SCHEMES.get(n).rank))
        if not levels:
            raise ValueError("kv.budget.candidates: needs at least one scheme besides drop")
    names = set(levels) | set(plan.sharer.values())
    return Codec(
        selector=build_selector(selection), keep=keep, min_tokens=int(selection["min_tokens"]), plan=plan,
        schemes={n: build_kv_schemes(n, quant) for n in names},
        allocator=build_allocator(budget.get("allocator", "greedy")) if budget else None,
        bytes_per_sample=int(budget["bytes_per_sample"]) if budget else None, levels=levels,
    )  # fmt: skip
