"""Byte budgets are never exceeded on the real packed message: `python -m pytest tests/qc2c/kv/test_budget.py -q`."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kv_cases import build_section

from qc2c.config import kv_config
from qc2c.kv.budget import ALLOCATORS, BudgetTooSmall
from qc2c.kv.codec import build_codec


def _codec(section, bytes_per_sample: int, candidates=("drop", "int4", "int8"), method: str = "vnorm"):
    kv = {
        "quant": {"scheme": "int8", "group_size": 16},
        "selection": {"method": method, "keep": 1.0},
        "budget": {"bytes_per_sample": bytes_per_sample, "allocator": "greedy", "candidates": list(candidates)},
    }
    n = len(section.sharer)
    return build_codec(kv_config(kv), layer_map=section.layer_map, n_sharer_layers=n, n_receiver_layers=n)


@pytest.mark.parametrize("allocator", ALLOCATORS.names())
@given(
    budget=st.integers(200, 30_000),
    n=st.integers(1, 60),
    n_pad=st.integers(0, 10),
    seed=st.integers(0, 99),
    candidates=st.sampled_from([("drop", "int4", "int8"), ("drop", "int2", "nf4", "fp16"), ("drop", "int8")]),
)
def test_budget_is_never_exceeded_as_measured_on_the_packed_message(allocator, budget, n, n_pad, seed, candidates):
    section = build_section(2, 3, 2, n, 8, seed, n_pad=min(n, n_pad))
    try:
        codec = _codec(section, budget, candidates)
        transmitted = codec.transmit(section)
    except BudgetTooSmall:
        return
    messages, _, _ = codec.encode(section)
    for record, message in zip(transmitted.records, messages):
        assert record["nbytes"] == len(message.to_bytes()) <= budget
        assert record["nbytes"] == record["nbytes_closed_form"]


def test_more_budget_buys_more_tokens_then_more_precision() -> None:
    section = build_section(1, 3, 2, 40, 8, 0)
    sent = []
    for budget in (1000, 4000, 8000, 30000):
        record = _codec(section, budget).transmit(section).records[0]
        sent.append((record["n_tokens_sent"], record["n_tokens_per_scheme"]))
    assert [s[0] for s in sent] == sorted(s[0] for s in sent)
    assert sent[-1][1].get("int8", 0) > sent[1][1].get("int8", 0)
    assert sent[-1][0] == 40


def test_the_best_scored_tokens_get_the_most_precise_level() -> None:
    section = build_section(1, 2, 2, 40, 8, 1)
    all_int4 = _codec(section, 10**6, ("drop", "int4")).transmit(section).records[0]["nbytes"]
    all_int8 = _codec(section, 10**6, ("drop", "int8")).transmit(section).records[0]["nbytes"]
    codec = _codec(section, (all_int4 + all_int8) // 2)
    messages, sel, layouts = codec.encode(section)
    sets = dict(zip([name for name, _, _ in layouts[0].segments], messages[0].token_indices()))
    assert "int8" in sets and "int4" in sets
    best = sel.ranked[0][: sets["int8"].numel()].sort().values
    assert sets["int8"].tolist() == best.tolist()


def test_a_budget_below_the_fixed_overhead_is_refused_with_the_field_name() -> None:
    section = build_section(1, 2, 2, 10, 8, 0)
    with pytest.raises(BudgetTooSmall, match="budget.bytes_per_sample: 10 is below"):
        _codec(section, 10).transmit(section)
