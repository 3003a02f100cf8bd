"""Message bytes are exact and survive the wire: `python -m pytest tests/qc2c/kv/test_wire.py -q`."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from kv_cases import build_section

from qc2c.config import kv_config
from qc2c.kv.codec import build_codec
from qc2c.kv.grouping import AXES
from qc2c.kv.quant import SCHEMES
from qc2c.kv.schemes.base import pack
from qc2c.kv.wire import Message, WireError, decode_indices, encode_index_rows, encode_indices, index_kind


@st.composite
def kv_settings(draw) -> dict:
    scheme = draw(st.sampled_from(SCHEMES.names()))
    method = draw(st.sampled_from(["all", "front", "back", "random", "knorm", "vnorm"]))
    kv = {
        "quant": {
            "scheme": scheme,
            "key_axis": draw(st.sampled_from(AXES)),
            "value_axis": draw(st.sampled_from(AXES)),
            "group_size": draw(st.one_of(st.none(), st.integers(1, 40))),
            "symmetric": draw(st.booleans()),
            "scale_dtype": draw(st.sampled_from(["float16", "float32"])),
        },
        "selection": {
            "method": method,
            "keep": 1.0 if method == "all" else draw(st.floats(0.01, 1.0)),
            "min_tokens": draw(st.integers(0, 5)),
            "seed": draw(st.integers(0, 9)),
        },
    }
    if draw(st.booleans()):
        kv["precision"] = {
            "default": draw(st.sampled_from(SCHEMES.names())),
            "overrides": [{"layers": [0], "scheme": draw(st.sampled_from(SCHEMES.names()))}],
        }
    return kv


@given(kv=kv_settings(), n=st.integers(1, 70), n_pad=st.integers(0, 10), seed=st.integers(0, 2**16))
def test_nbytes_equals_closed_form_equals_serialized_length_and_round_trips(kv, n, n_pad, seed) -> None:
    section = build_section(2, 3, 2, n, 6, seed, n_pad=min(n_pad, n), n_receiver_layers=4)
    codec = build_codec(kv_config(kv), layer_map=section.layer_map, n_sharer_layers=3, n_receiver_layers=4)
    messages, _, layouts = codec.encode(section)
    for message, layout, n_valid in zip(messages, layouts, section.fuse_mask.sum(1).tolist()):
        assert message.n_tokens == n_valid  # the row's own index space, not the padded width
        data = message.to_bytes()
        closed = codec.closed_form(layout, n_valid, (3, 2, 6))
        assert message.breakdown == closed
        assert message.nbytes == sum(closed.values()) == len(data)
        again = Message.from_bytes(data)
        assert again.to_bytes() == data
        assert again.breakdown == message.breakdown
    mask = section.fuse_mask
    original, kept = codec.decode(messages, dtype=torch.float32, device="cpu", fuse_mask=mask)
    rebuilt, kept_again = codec.decode(
        [Message.from_bytes(m.to_bytes()) for m in messages], dtype=torch.float32, device="cpu", fuse_mask=mask
    )
    assert not bool((kept & ~mask).any())
    assert torch.equal(kept, kept_again)
    for (k1, v1), (k2, v2) in zip(original, rebuilt):
        assert torch.equal(k1, k2) and torch.equal(v1, v2)


@pytest.mark.parametrize(
    "n_sent, n_tokens, kind",
    [(3, 100, "uint16"), (13, 100, "bitmap"), (2, 70000, "uint32"), (9000, 70000, "bitmap"), (0, 10, "uint16")],
)
def test_indices_pick_the_smaller_encoding_and_decode_back(n_sent: int, n_tokens: int, kind: str) -> None:
    idx = torch.randperm(n_tokens, generator=torch.Generator().manual_seed(0))[:n_sent].sort().values
    assert index_kind(n_sent, n_tokens) == kind
    got_kind, data = encode_indices(idx, n_tokens)
    assert got_kind == kind
    assert torch.equal(decode_indices(kind, data, n_sent, n_tokens), idx)


def test_corrupt_messages_are_refused() -> None:
    section = build_section(1, 2, 1, 5, 4, 0)
    codec = build_codec(
        kv_config({"quant": {"scheme": "int4"}}), layer_map=section.layer_map, n_sharer_layers=2, n_receiver_layers=2
    )
    data = codec.encode(section)[0][0].to_bytes()
    with pytest.raises(WireError, match="not a qc2c message"):
        Message.from_bytes(b"XXXX" + data[4:])
    with pytest.raises(WireError, match="truncated"):
        Message.from_bytes(data[:-1])
    with pytest.raises(WireError, match="trailing"):
        Message.from_bytes(data + b"\0")


def _reference_index(idx: torch.Tensor, n_tokens: int) -> tuple[str, torch.Tensor]:
    """One row's index bytes the slow way: a 0/1 mask packed a bit per position (bitmap) or each position's
    little-endian bytes (lists)."""
    kind = index_kind(idx.numel(), n_tokens)
    if kind == "bitmap":
        mask = torch.zeros(1, n_tokens, dtype=torch.uint8)
        mask[0, idx] = 1
        return kind, pack(mask, 1)[0]
    width = 2 if kind == "uint16" else 4
    return kind, torch.tensor([(int(p) >> (8 * b)) & 255 for p in idx for b in range(width)], dtype=torch.uint8)


@given(
    spans=st.lists(st.integers(1, 300), min_size=1, max_size=6),
    fractions=st.lists(st.sampled_from((0.0, 0.05, 0.5, 0.9, 1.0)), min_size=6, max_size=6),
    seed=st.integers(0, 2**16),
)
def test_index_rows_equal_a_row_by_row_reference(spans, fractions, seed) -> None:
    """Batched index encoding (full rows written directly, other bitmaps packed together) = one row at a time."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for span, frac in zip(spans, fractions):
        keep = torch.rand(span, generator=gen) < frac
        rows.append(torch.arange(span)[keep] if frac < 1.0 else torch.arange(span))
    for (kind, data), idx, span in zip(encode_index_rows(rows, spans), rows, spans):
        ref_kind, ref = _reference_index(idx, span)
        assert kind == ref_kind and torch.equal(data, ref)
        assert torch.equal(decode_indices(kind, data, idx.numel(), span), idx)
