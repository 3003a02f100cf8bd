"""python -m pytest tests/qc2c/kv/test_uncompressed.py -q

The c2c_fp16 message size: fp16 codes of the sharer layers the fuser reads, plus index and header bytes.
"""

from __future__ import annotations

import math
from dataclasses import replace

from kv_cases import build_section

from qc2c.config import kv_config
from qc2c.kv.codec import build_codec
from qc2c.kv.uncompressed import Uncompressed
from qc2c.kv.wire import header_nbytes


def test_fp16_message_counts_only_the_sharer_layers_the_fuser_reads() -> None:
    section = build_section(2, 4, 2, 20, 8, 0, n_pad=5, n_receiver_layers=3)
    section = replace(section, layer_map={0: 1, 1: 1, 2: 3})  # two of the four sharer layers are read
    out = Uncompressed().transmit(section)
    for r, record in enumerate(out.records):
        n = int(section.fuse_mask[r].sum())
        parts = record["nbytes_breakdown"]
        assert parts["payload"] == 2 * 2 * n * 2 * 2 * 8  # K and V, 2 bytes, n tokens, 2 layers, 2 heads, dim 8
        assert parts["scales"] == 0
        assert parts["indices"] == math.ceil(n / 8)  # a bitmap of the row's own tokens (all sent)
        assert parts["header"] == header_nbytes(4, 1, ["fp16"])
        assert record["nbytes"] == sum(parts.values()) == record["nbytes_fp16_message"]
        assert record["n_tokens_sent"] == n
    assert out.sharer is section.sharer and bool((out.kept == section.fuse_mask).all())


def test_a_codec_reports_the_same_fp16_message_size_as_its_ratio_reference() -> None:
    section = build_section(3, 4, 2, 30, 8, 1, n_pad=6, n_receiver_layers=5)
    codec = build_codec(
        kv_config({"quant": {"scheme": "int4"}}), layer_map=section.layer_map, n_sharer_layers=4, n_receiver_layers=5
    )
    compressed = codec.transmit(section).records
    reference = Uncompressed().transmit(section).records
    assert [c["nbytes_fp16_message"] for c in compressed] == [r["nbytes"] for r in reference]
    assert all(c["nbytes"] < c["nbytes_fp16_message"] for c in compressed)
