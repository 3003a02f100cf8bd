"""Encoding and decoding the messages of a batch's rows together (the codec's hot path).

`encode_rows` turns rows' token sets and layouts into one `Message` each; rows of one layout are encoded at
once, every sharer layer of a segment in one stack, so a batch costs a handful of kernels per segment.
`decode_messages` reads any batch of messages back (each header says what it holds); rows whose messages
share a layout are decoded at once and scattered into (B, H, N, D) per sharer layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from qc2c.fuser.seam import KV, SectionKV
from qc2c.kv.layout import Layout, SchemePairs, TokenSet
from qc2c.kv.quant import Encoded, Scheme
from qc2c.kv.schemes.base import scratch
from qc2c.kv.wire import Message, Segment, decode_index_rows, encode_index_rows

# ---- decoding ----


def decode_messages(
    messages: list[Message], *, dtype: torch.dtype, device: torch.device | str, fuse_mask: Tensor | None = None
) -> tuple[list[KV], Tensor]:
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
    out: list[Tensor | None] = [None, None]  # K and V, (B, L, H, N, D); None until a segment writes them
    kept = torch.zeros(b, fuse_mask.shape[1], dtype=torch.bool, device=device)
    for members in _same_layout(messages):
        tokens = _token_columns([messages[r] for r in members], columns[members], device)
        rows = torch.tensor(members, device=device).unsqueeze(1)
        for idx in tokens:
            kept[rows, idx] = True
        for j, seg in enumerate(messages[members[0]].segments):
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
    key, value = (x if x is not None else torch.zeros(b, *shape, dtype=dtype, device=device) for x in out)
    return [(key[:, i], value[:, i]) for i in range(m0.n_layers)], kept


def _same_layout(messages: list[Message]) -> list[list[int]]:
    """Row indices grouped by message layout (token sets and segments), in order of first appearance."""
    groups: dict[Any, list[int]] = {}
    for r, m in enumerate(messages):
        key = (
            tuple(zip(m.index_kinds, m.index_counts)),
            tuple((s.key_scheme, s.value_scheme, s.layers, s.token_set) for s in m.segments),
        )
        groups.setdefault(key, []).append(r)
    return list(groups.values())


def _token_columns(messages: list[Message], columns: Tensor, device: torch.device | str) -> list[Tensor]:
    """Per token set, the (R, count) columns the rows' sent tokens go to (`columns`: their rank -> column)."""
    first, spans = messages[0], [m.n_tokens for m in messages]
    return [
        columns.gather(1, decode_index_rows(kind, [m.index_data[s] for m in messages], count, spans).to(device))
        for s, (kind, count) in enumerate(zip(first.index_kinds, first.index_counts))
    ]


# ---- encoding ----


def encode_rows(
    section: SectionKV,
    rows: list[int],
    sets: Sequence[list[TokenSet]],
    layouts: Sequence[Layout],
    schemes: SchemePairs,
) -> dict[int, Message]:
    """{r: row r's message} for `rows` of the section (`sets[r]`, `layouts[r]`: row r's token sets and layout).

    Rows of one layout are encoded together. Each (sharer layers, K or V) stack is built at most once per call,
    in its own scratch slot (see `_stack`)."""
    groups: dict[Layout, list[int]] = {}
    for r in rows:
        groups.setdefault(layouts[r], []).append(r)
    valid = section.fuse_mask.bool()
    rank = valid.long().cumsum(1) - 1  # (B, N): a fused position's rank among its row's fused positions
    n_valid = valid.sum(1).tolist()
    stacks: dict[tuple[tuple[int, ...], int], Tensor] = {}
    out: dict[int, Message] = {}
    for layout, members in groups.items():
        by_set = [
            encode_index_rows([rank[r, sets[r][s][1]] for r in members], [n_valid[r] for r in members])
            for s in range(len(sets[members[0]]))
        ]
        encoded = [
            _encode_segment(section, members, [sets[r][set_id][1] for r in members], layers, schemes[name], stacks)
            for name, layers, set_id in layout.segments
        ]
        for i, r in enumerate(members):
            segments = [
                Segment(*schemes[name], set_id, layers, key.row(i), value.row(i))
                for (name, layers, set_id), (key, value) in zip(layout.segments, encoded)
            ]
            out[r] = _message(section, n_valid[r], layout, [column[i] for column in by_set], segments)
    return out


def _encode_segment(
    section: SectionKV,
    members: list[int],
    positions: list[Tensor],
    layers: tuple[int, ...],
    pair: tuple[Scheme, Scheme],
    stacks: dict[tuple[tuple[int, ...], int], Tensor],
) -> tuple[Encoded, Encoded]:
    """(K, V) of `layers` at each member row's `positions`, encoded for all members at once. Where the members
    are the whole batch and the positions every column, a scheme that can reads the layers in place."""
    tokens = torch.stack(positions)
    k0 = section.sharer[0][0]
    whole = len(members) == k0.shape[0] and tokens.shape[1] == k0.shape[2] and _is_arange(tokens)
    halves = []
    for h, scheme in enumerate(pair):
        per_layer = [section.sharer[i][h] for i in layers]
        enc = scheme.encode_layers(per_layer) if whole else None
        if enc is None:
            key = (layers, h)
            if key not in stacks:
                stacks[key] = _stack(per_layer, f"stack{len(stacks)}")
            enc = _encode(scheme, stacks[key] if whole else _gather(stacks[key], members, tokens))
        halves.append(enc)
    return halves[0], halves[1]


def _message(
    section: SectionKV, n_tokens: int, layout: Layout, index: list[tuple[str, Tensor]], segments: list[Segment]
) -> Message:
    """A row's message: its `n_tokens` fused tokens, the encoded index of each token set, the segments."""
    k0 = section.sharer[0][0]
    return Message(
        n_tokens=n_tokens,
        n_layers=len(section.sharer),
        n_heads=k0.shape[1],
        head_dim=k0.shape[3],
        index_kinds=[kind for kind, _ in index],
        index_counts=list(layout.set_counts),
        index_data=[data for _, data in index],
        segments=segments,
    )


# ---- tensor helpers ----
#
# Scratch buffers (qc2c.kv.schemes.base.scratch) are module-level CPU buffers, one per (slot, device, dtype),
# reused by every later call that asks for the same slot (on other devices `scratch` allocates afresh). The
# contract that keeps them safe:
# - a stack built by `_stack` lives in slot "stack<i>", i counting the stacks of ONE `encode_rows` call, so two
#   stacks alive in that call never share memory; the next call overwrites them;
# - nothing a scratch buffer holds escapes: schemes copy what they keep into fresh tensors (payload, scales,
#   zeros), `_gather` indexes into a fresh tensor, and decoding writes its result into fresh tensors;
# - the schemes' own slots ("encode", "decode") are filled and consumed inside one kernel call.
# Single-threaded use only: two threads encoding at once on CPU would share the slots.


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
        if (
            part.shape != first.shape
            or part.dtype != first.dtype
            or part.device != first.device
            or part.untyped_storage().data_ptr() != storage
            or part.data_ptr() != base + r * step
            or (part.shape[1] > 1 and part.stride(1) != 1)
        ):
            return None
    return first.as_strided((len(parts), first.shape[1]), (first.shape[1], 1))
