"""Per-receiver-layer precision maps resolved per sharer layer: `python -m pytest tests/qc2c/kv/test_precision.py -q`."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qc2c.config import OverrideConfig, PrecisionConfig
from qc2c.fuser.layer_map import last_aligned
from qc2c.kv.precision import ineffective_overrides, parse_layer_range, resolve_precision
from qc2c.kv.quant import SCHEMES

LAYER_MAP = last_aligned(28, 24)  # Qwen3-0.6B (28) <- Qwen2.5-0.5B (24): receiver 0-4 read sharer 0


def _precision(default: str | None = None, *overrides: tuple[object, str], last_fp16: int | None = None):
    """A PrecisionConfig whose overrides are (layers as written in a manifest, scheme)."""
    parsed = tuple(OverrideConfig(parse_layer_range(layers), scheme) for layers, scheme in overrides)
    return PrecisionConfig(default=default, overrides=parsed, last_fp16=last_fp16)


def test_last_aligned_28_from_24_sends_each_sharer_layer_once_at_the_highest_precision() -> None:
    precision = _precision("int4", ([2], "int8"), last_fp16=4)
    plan = resolve_precision(precision, scheme="int8", layer_map=LAYER_MAP, n_receiver_layers=28)
    assert [t for t, s in LAYER_MAP.items() if s == 0] == [0, 1, 2, 3, 4]
    assert plan.receiver[2] == "int8" and plan.receiver[0] == "int4" and plan.receiver[27] == "fp16"
    assert sorted(plan.sharer) == list(range(24))
    assert plan.sharer[0] == "int8"  # receiver 2 asks int8, receivers 0,1,3,4 int4: the higher wins
    assert [plan.sharer[s] for s in (20, 21, 22, 23)] == ["fp16"] * 4
    assert plan.groups() == {"int4": list(range(1, 20)), "int8": [0], "fp16": [20, 21, 22, 23]}


@given(asked=st.lists(st.sampled_from(sorted(SCHEMES.names())), min_size=28, max_size=28))
def test_every_sharer_layer_gets_the_max_rank_of_its_readers(asked: list[str]) -> None:
    precision = _precision(None, *(([t], s) for t, s in enumerate(asked)))
    plan = resolve_precision(precision, scheme="int8", layer_map=LAYER_MAP, n_receiver_layers=28)
    assert plan.receiver == dict(enumerate(asked))
    for s in range(24):
        readers = [asked[t] for t, src in LAYER_MAP.items() if src == s]
        assert SCHEMES.get(plan.sharer[s]).rank == max(SCHEMES.get(n).rank for n in readers)


def test_later_overrides_win_and_ranges_are_inclusive() -> None:
    precision = _precision("int8", ("24-27", "fp16"), ("26-27", "int2"))
    plan = resolve_precision(precision, scheme="int8", layer_map=LAYER_MAP, n_receiver_layers=28)
    assert [plan.receiver[t] for t in range(23, 28)] == ["int8", "fp16", "fp16", "int2", "int2"]


def test_no_precision_section_means_the_quant_scheme_everywhere() -> None:
    plan = resolve_precision(None, scheme="nf4", layer_map=LAYER_MAP, n_receiver_layers=28)
    assert set(plan.receiver.values()) == set(plan.sharer.values()) == {"nf4"}


def test_layers_past_the_receiver_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"kv.precision.overrides\[0\].layers: receiver layers \[28, 29, 30\] out of"):
        resolve_precision(_precision(None, ("3-30", "fp16")), scheme="int8", layer_map=LAYER_MAP, n_receiver_layers=28)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("27-24", "reversed"),
        ("x", "malformed"),
        ("3-5000", "goes past layer 4095"),
        (True, "must be 'A-B'"),
        (5, "must be 'A-B'"),
        ([], "must be 'A-B'"),
        ([1, "2"], "non-negative integers"),
        ([2, 1], "strictly increasing"),
    ],
)
def test_bad_layer_specs_are_refused(spec: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_layer_range(spec)


def test_parse_layer_range_accepts_the_documented_forms() -> None:
    assert parse_layer_range("24-27") == (24, 25, 26, 27)
    assert parse_layer_range(" 3 - 3 ") == (3,)
    assert parse_layer_range([24, 25]) == (24, 25)


def test_an_override_outbid_by_a_reader_of_the_same_sharer_layer_is_reported() -> None:
    precision = _precision("int8", ([1], "int4"))  # sharer layer 0 is also read by receivers 0, 2-4 at int8
    lines = ineffective_overrides(precision, scheme="int8", layer_map=LAYER_MAP, n_receiver_layers=28)
    assert len(lines) == 1 and "int4 saves nothing on receiver layers [1]" in lines[0]
