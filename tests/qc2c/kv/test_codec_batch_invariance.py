"""A row's message is the one it sends alone: `python -m pytest tests/qc2c/kv/test_codec_batch_invariance.py -q`.

Row 0 of a section is left-padded by its batch (the other row is longer); the same row on its own has no
padding. Its message must be byte for byte the same (indices, payload, header), and decode to the same values
at its own columns, for every selector, a byte budget and a mixed precision plan.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from kv_cases import PER_MEMBER, build_section, row_alone

from qc2c.config import kv_config
from qc2c.kv.codec import build_codec

KVS = {
    "int4_knorm": {"quant": {"scheme": "int4", "group_size": 8}, "selection": {"method": "knorm", "keep": 0.5}},
    "int8_all": {"quant": {"scheme": "int8"}},
    "random": {"selection": {"method": "random", "keep": 0.3, "seed": 3}},
    "attention": {"selection": {"method": "attention", "keep": 0.3, "window": 4}},
    "front_mixed": {
        "selection": {"method": "front", "keep": 0.6},
        "precision": {"default": "int2", "overrides": [{"layers": [0], "scheme": "fp16"}]},
    },
    "budget": {"budget": {"bytes_per_sample": 700}, "selection": {"method": "vnorm", "keep": 0.9}},
}


@pytest.mark.parametrize("name", sorted(KVS))
@PER_MEMBER
@given(n=st.integers(1, 60), n_pad=st.integers(1, 20), seed=st.integers(0, 2**16))
def test_a_rows_message_and_decoded_kv_do_not_depend_on_its_batch(name: str, n: int, n_pad: int, seed: int) -> None:
    section = build_section(2, 3, 2, n + n_pad, 8, seed, n_pad=n_pad, n_receiver_layers=4, attention=True)
    alone = row_alone(section, 0, n_pad)
    codec = build_codec(kv_config(KVS[name]), layer_map=section.layer_map, n_sharer_layers=3, n_receiver_layers=4)
    batch_out, alone_out = codec.transmit(section), codec.transmit(alone)
    in_batch, by_itself = batch_out.records[0], alone_out.records[0]
    for key in ("nbytes", "nbytes_breakdown", "nbytes_closed_form", "n_tokens_sent", "n_tokens"):
        assert in_batch[key] == by_itself[key], key
    assert codec.encode(section)[0][0].to_bytes() == codec.encode(alone)[0][0].to_bytes()
    assert torch.equal(batch_out.kept[0, n_pad:], alone_out.kept[0]) and not bool(batch_out.kept[0, :n_pad].any())
    kept = alone_out.kept[0]
    for (kb, vb), (ka, va) in zip(batch_out.sharer, alone_out.sharer):
        assert torch.equal(kb[0, :, n_pad:][:, kept], ka[0][:, kept])
        assert torch.equal(vb[0, :, n_pad:][:, kept], va[0][:, kept])
