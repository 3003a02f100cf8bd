"""Per-receiver-layer precision maps resolved per sharer layer: `python -m pytest tests/qc2c/kv/test_precision.py -q`."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qc2c.fuser.layer_map import last_aligned
from qc2c.kv.precision import parse_layers, resolve_precision
from qc2c.kv.quant import SCHEMES

LAYER_MAP = last_aligned(28, 24)  # Qwen3-0.6B (28) <- Qwen2.5-0.5B (24): receiver 0-4 read sharer 0


def test_last_aligned_28_from_24_sends_each_sharer_layer_once_at_the_highest_precision() -> None:
    plan = resolve_precision({"default": "int4", "overrides": [{"layers": [2], "scheme": "int8"}], "last_fp16": 4},
                             scheme="int8", layer_map=LAYER_MAP, n_receiver_layers=28)  # fmt: skip
    assert [t for t, s in LAYER_MAP.items() if s == 0] == [0, 1, 2, 3, 4]
    assert plan.receiver[2] == "int8" and plan.receiver[0] == "int4" and plan.receiver[27] == "fp16"
    assert sorted(plan.sharer) == list(range(24))
    assert plan.sharer[0] == "int8"  # receiver 2 asks int8, receivers 0,1,3,4 int4: the higher wins
    assert [plan.sharer[s] for s in (20, 21, 22, 23)] == ["fp16"] * 4
    assert plan.groups() == {"int4": list(range(1, 20)), "int8": [0], "fp16": [20, 21, 22, 23]}


@given(asked=st.lists(st.sampled_from(sorted(SCHEMES.names())), min_size=28, max_size=28))
def test_every_sharer_layer_gets_the_max_rank_of_its_readers(asked: list[str]) -> None:
    overrides = [{"layers": [t], "scheme": s} for t, s in enumerate(asked)]
    plan = resolve_precision({"overrides": overrides}, scheme="int8", layer_map=LAYER_MAP, n_receiver_layers=28)
    assert plan.receiver == dict(enumerate(asked))
    for s in range(24):
        readers = [asked[t] for t, src in LAYER_MAP.items() if src == s]
        assert SCHEMES.get(plan.sharer[s]).rank == max(SCHEMES.get(n).rank for n in readers)


def test_later_overrides_win_and_ranges_are_inclusive() -> None:
    plan = resolve_precision({"default": "int8", "overrides": [{"layers": "24-27", "scheme": "fp16"},
                              {"layers": "26-27", "scheme": "int2"}]}, scheme="int8", layer_map=LAYER_MAP,
                             n_receiver_layers=28)  # fmt: skip
    assert [plan.receiver[t] for t in range(23, 28)] == ["int8", "fp16", "fp16", "int2", "int2"]


def test_no_precision_section_means_the_quant_scheme_everywhere() -> None:
    plan = resolve_precision(None, scheme="nf4", layer_map=LAYER_MAP, n_receiver_layers=28)
    assert set(plan.receiver.values()) == set(plan.sharer.values()) == {"nf4"}


@pytest.mark.parametrize("spec, message", [("27-24", "not a range"), ("3-30", "out of range"), ("x", "not a range"),
                                           (True, "expected a range"), ([1, "2"], "expected a range")])  # fmt: skip
def test_bad_layer_specs_name_the_field(spec, message: str) -> None:
    with pytest.raises(ValueError, match=rf"kv.precision.overrides\[0\].layers: .*{message}"):
        resolve_precision({"overrides": [{"layers": spec, "scheme": "fp16"}]}, scheme="int8", layer_map=LAYER_MAP,
                          n_receiver_layers=28)  # fmt: skip


def test_parse_layers_accepts_the_documented_forms() -> None:
    assert parse_layers("24-27", 28, "x") == [24, 25, 26, 27]
    assert parse_layers([25, 24], 28, "x") == [24, 25]
    assert parse_layers(5, 28, "x") == [5]
