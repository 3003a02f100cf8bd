"""Codec records, defaults and refusals: `python -m pytest tests/qc2c/kv/test_codec.py -q`."""

from __future__ import annotations

import pytest
import torch
from kv_cases import build_section

from qc2c.config import kv_config
from qc2c.fuser.layer_map import last_aligned
from qc2c.kv.codec import build_codec
from qc2c.kv.layout import BudgetLayout, PrecisionLayout

RECORD_KEYS = {
    "nbytes",
    "nbytes_breakdown",
    "n_tokens_sent",
    "n_tokens",
    "nbytes_fp16_sharer",
    "nbytes_fp16_message",
    "nbytes_closed_form",
    "encode_s",
    "decode_s",
    "sharer_layer_schemes",
}


def test_records_report_measured_bytes_tokens_and_the_fp16_sharer_size() -> None:
    section = build_section(3, 4, 2, 30, 8, 0, n_pad=6, n_receiver_layers=5)
    codec = build_codec(
        kv_config({"quant": {"scheme": "int4"}, "selection": {"method": "back", "keep": 0.5}}),
        layer_map=section.layer_map,
        n_sharer_layers=4,
        n_receiver_layers=5,
    )
    out = codec.transmit(section)
    assert len(out.records) == 3
    for r, record in enumerate(out.records):
        assert RECORD_KEYS <= set(record)
        n_valid = int(section.fuse_mask[r].sum())
        assert record["n_tokens"] == n_valid and record["n_tokens_sent"] == round(0.5 * n_valid)
        assert record["nbytes"] == sum(record["nbytes_breakdown"].values()) == record["nbytes_closed_form"]
        assert record["nbytes_fp16_sharer"] == 2 * 2 * n_valid * 4 * 2 * 8  # K and V, fp16, L·H·D per token
        assert record["sharer_layer_schemes"] == {str(s): "int4" for s in range(4)}
        assert int(out.kept[r].sum()) == record["n_tokens_sent"]
    assert out.sharer[0][0].dtype == section.sharer[0][0].dtype and out.sharer[0][0].shape == (3, 2, 30, 8)


def test_the_plan_has_both_views_of_the_precision_map() -> None:
    """What results report as `precision` (runner.summarize.precision_view reads these two views)."""
    codec = build_codec(
        kv_config({"precision": {"default": "int4", "last_fp16": 2}}),
        layer_map=last_aligned(28, 24),
        n_sharer_layers=24,
        n_receiver_layers=28,
    )
    plan = codec.plan
    assert len(plan.receiver) == 28 and len(plan.sharer) == 24
    assert plan.receiver[27] == plan.sharer[23] == "fp16"
    assert plan.receiver[0] == plan.sharer[0] == "int4"


def test_decode_restores_the_receivers_dtype() -> None:
    section = build_section(1, 2, 2, 12, 8, 0, dtype=torch.bfloat16)
    out = build_codec(
        kv_config({"quant": {"scheme": "int8"}}), layer_map=section.layer_map, n_sharer_layers=2, n_receiver_layers=2
    ).transmit(section)
    assert all(k.dtype == v.dtype == torch.bfloat16 for k, v in out.sharer)


def test_manifest_defaults_apply_when_keys_are_missing() -> None:
    codec = build_codec(kv_config({}), layer_map=last_aligned(28, 24), n_sharer_layers=24, n_receiver_layers=28)
    key, value = codec.schemes["int8"]
    assert (key.grouping.axis, value.grouping.axis, key.grouping.group_size) == ("channel", "token", 64)
    assert codec.keep == 1.0 and codec.selector.name == "all" and isinstance(codec.planner, PrecisionLayout)


def test_a_budget_plans_with_its_levels_in_ascending_precision() -> None:
    kv = kv_config({"budget": {"bytes_per_sample": 100, "candidates": ["int8", "drop", "int2"]}})
    codec = build_codec(kv, layer_map=last_aligned(28, 24), n_sharer_layers=24, n_receiver_layers=28)
    assert isinstance(codec.planner, BudgetLayout)
    assert codec.planner.levels == ("int2", "int8") and codec.planner.layers == tuple(range(24))
    assert set(codec.schemes) == {"int2", "int8"}  # kv.quant.scheme (int8) everywhere, plus the levels


@pytest.mark.parametrize(
    "kv, message",
    [
        ({"quant": {"scheme": "int3"}}, "did you mean"),
        ({"selection": {"method": "top"}}, "unknown token selector 'top'"),
        ({"budget": {"bytes_per_sample": 100, "candidates": ["drop"]}}, "kv.budget.candidates"),
        ({"budget": {"bytes_per_sample": 100, "allocator": "optimal"}}, "unknown budget allocator 'optimal'"),
        ({"precision": {"overrides": [{"layers": [30, 31], "scheme": "fp16"}]}}, "out of range"),
    ],
)
def test_bad_settings_are_refused_at_build_time_with_the_field(kv: dict, message: str) -> None:
    """What only the pair can tell (layer counts), and names outside the schema; ranges and cross-field rules
    (keep in (0, 1], keep 1.0 with method all) are the schema's (tests/runner/test_settings.py)."""
    with pytest.raises(ValueError, match=message):
        build_codec(kv_config(kv), layer_map=last_aligned(28, 24), n_sharer_layers=24, n_receiver_layers=28)


def test_delta_projections_are_returned_only_when_the_message_is_lossless() -> None:
    section = build_section(1, 2, 2, 10, 8, 0, n_receiver_layers=3)
    kw = {"layer_map": section.layer_map, "n_sharer_layers": 2, "n_receiver_layers": 3}
    lossless = build_codec(
        kv_config({"quant": {"scheme": "fp32"}, "selection": {"method": "delta", "keep": 0.5}}), **kw
    )
    lossy = build_codec(kv_config({"quant": {"scheme": "int4"}, "selection": {"method": "delta", "keep": 0.5}}), **kw)
    assert sorted(lossless.transmit(section).projected) == [0, 1, 2]
    assert lossy.transmit(section).projected is None


def test_rows_without_tokens_send_a_header_only_message() -> None:
    section = build_section(2, 2, 1, 8, 4, 0, n_pad=8)
    out = build_codec(
        kv_config({"quant": {"scheme": "int8"}}), layer_map=section.layer_map, n_sharer_layers=2, n_receiver_layers=2
    ).transmit(section)
    assert out.records[0]["n_tokens_sent"] == 0 and out.records[0]["nbytes_breakdown"]["payload"] == 0
    assert not bool(out.kept[0].any()) and bool(out.kept[1].all())


def test_rows_of_one_batch_are_decoded_in_place_and_other_rows_are_copied() -> None:
    """Decode reads the rows of one encode call straight from its buffer; any other rows go through a copy."""
    from qc2c.kv.batched import _rows_in_place

    buf = torch.arange(12, dtype=torch.uint8).reshape(3, 4)
    rows = [buf[r : r + 1] for r in range(3)]
    whole = _rows_in_place(rows)
    assert whole is not None and whole.data_ptr() == buf.data_ptr() and torch.equal(whole, buf)
    assert _rows_in_place(rows[::-1]) is None
    assert _rows_in_place([rows[0], rows[2]]) is None
    assert _rows_in_place([rows[0], buf.clone()[1:2]]) is None
    assert _rows_in_place([buf[0:1, :2], buf[1:2, :2]]) is None  # not contiguous rows
