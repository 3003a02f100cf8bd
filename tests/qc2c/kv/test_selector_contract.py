"""Contract every token selector keeps: `python -m pytest tests/qc2c/kv/test_selector_contract.py -q`.

Iterates SELECTORS.names(), so a new selector is tested without being listed here.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from kv_cases import PER_MEMBER, build_section, row_alone

from qc2c.config import SelectionConfig, from_json
from qc2c.kv.selection import SELECTORS, SelectionContext, build_selector, n_tokens_to_send


def _select(name: str, section, keep: float, min_tokens: int, seed: int = 0, window: int = 4):
    keep = 1.0 if name == "all" else keep
    selector = build_selector(
        from_json(SelectionConfig, {"method": name, "seed": seed, "window": window, "knorm_sign": "low"})
    )
    return selector.select(SelectionContext(section), keep, min_tokens)


@pytest.mark.parametrize("name", SELECTORS.names())
@PER_MEMBER
@given(
    n=st.integers(1, 40),
    n_pad=st.integers(0, 12),
    keep=st.floats(0.01, 1.0),
    min_tokens=st.integers(0, 6),
    seed=st.integers(0, 2**16),
)
def test_selection_is_deterministic_sorted_unique_in_range_and_sizes_follow_the_rule(
    name: str, n: int, n_pad: int, keep: float, min_tokens: int, seed: int
) -> None:
    section = build_section(2, 2, 2, n, 4, seed, n_pad=min(n_pad, n), attention=True)
    first = _select(name, section, keep, min_tokens, seed)
    again = _select(name, section, keep, min_tokens, seed)
    valid = section.fuse_mask
    for r, idx in enumerate(first.indices):
        assert torch.equal(idx, again.indices[r])
        assert torch.equal(idx, idx.unique(sorted=True))
        assert bool(valid[r, idx].all()), "a padding position was selected"
        n_valid = int(valid[r].sum())
        expected = n_tokens_to_send(1.0 if name == "all" else keep, n_valid, min_tokens)
        window = int(valid[r].sum().clamp(max=4)) if name == "attention" else 0
        assert idx.numel() == first.n_sent[r] == max(expected, window)
        assert torch.equal(first.kept[r].nonzero().view(-1), idx)


@pytest.mark.parametrize(
    "keep, n_valid, min_tokens, expected",
    [
        (0.1, 10, 1, 1),
        (0.25, 10, 1, 3),
        (0.15, 10, 1, 2),
        (0.1, 200, 64, 64),
        (1.0, 7, 1, 7),
        (0.5, 0, 1, 0),
        (0.01, 5, 0, 0),
        (0.3, 5, 9, 5),
    ],
)
def test_one_rounding_rule_half_up_with_floor_and_cap(keep, n_valid, min_tokens, expected) -> None:
    assert n_tokens_to_send(keep, n_valid, min_tokens) == expected


def test_random_depends_on_the_seed() -> None:
    section = build_section(1, 1, 1, 64, 4, 0)
    picks = {tuple(_select("random", section, 0.25, 1, seed=s).indices[0].tolist()) for s in range(4)}
    assert len(picks) == 4


def test_attention_always_keeps_the_window_even_at_tiny_keep() -> None:
    section = build_section(2, 2, 2, 30, 4, 1, n_pad=5, attention=True)
    sel = _select("attention", section, 0.01, 1, window=6)
    for r in range(2):
        last_valid = section.fuse_mask[r].nonzero().view(-1)[-6:]
        assert set(last_valid.tolist()) <= set(sel.indices[r].tolist())
        assert sel.n_sent[r] == 6


def test_knorm_sign_low_and_high_pick_opposite_ends() -> None:
    section = build_section(1, 2, 2, 40, 4, 2)
    ctx = SelectionContext(section)
    low = (
        build_selector(from_json(SelectionConfig, {"method": "knorm", "knorm_sign": "low"}))
        .select(ctx, 0.25, 1)
        .indices[0]
    )
    high = (
        build_selector(from_json(SelectionConfig, {"method": "knorm", "knorm_sign": "high"}))
        .select(ctx, 0.25, 1)
        .indices[0]
    )
    norms = torch.stack([k.norm(dim=-1).mean(1) for k, _ in section.sharer]).mean(0)[0]
    assert float(norms[low].max()) < float(norms[high].min())
    with pytest.raises(ValueError, match="knorm_sign"):
        build_selector(from_json(SelectionConfig, {"method": "knorm", "knorm_sign": "middle"}))


def test_front_and_back_take_the_ends_of_each_rows_own_tokens() -> None:
    section = build_section(2, 1, 1, 20, 4, 0, n_pad=8)
    front = _select("front", section, 0.5, 1).indices
    back = _select("back", section, 0.5, 1).indices
    assert front[0].tolist() == list(range(8, 14)) and back[0].tolist() == list(range(14, 20))
    assert front[1].tolist() == list(range(0, 10)) and back[1].tolist() == list(range(10, 20))


def test_delta_scores_by_projected_minus_receiver_value_and_returns_projections() -> None:
    section = build_section(1, 2, 2, 16, 4, 3, n_receiver_layers=3)
    ctx = SelectionContext(section)
    sel = build_selector(from_json(SelectionConfig, {"method": "delta"})).select(ctx, 0.25, 1)
    assert sorted(sel.projected) == [0, 1, 2]
    diffs = []
    for t, s in section.layer_map.items():
        _, v = section.project(t, section.sharer[s], section.receiver[t])
        diffs.append((v - section.receiver[t][1]).norm(dim=-1).mean(1))
    expected = torch.stack(diffs).mean(0)[0].argsort(descending=True, stable=True)[:4].sort().values
    assert torch.equal(sel.indices[0], expected)


def test_unknown_selector_suggests_the_closest_name() -> None:
    with pytest.raises(ValueError, match="did you mean 'knorm'"):
        build_selector(from_json(SelectionConfig, {"method": "knrom"}))


@pytest.mark.parametrize("name", SELECTORS.names())
@PER_MEMBER
@given(n=st.integers(1, 40), n_pad=st.integers(1, 12), keep=st.floats(0.01, 1.0), seed=st.integers(0, 2**16))
def test_a_rows_selection_is_the_one_it_makes_alone_whatever_its_batch_pads(
    name: str, n: int, n_pad: int, keep: float, seed: int
) -> None:
    """Row 0 is left-padded by its batch; alone it has no padding: same tokens, in the same rank order."""
    section = build_section(2, 2, 2, n + n_pad, 4, seed, n_pad=n_pad, attention=True)
    batch = _select(name, section, keep, 1, seed)
    alone = _select(name, row_alone(section, 0, n_pad), keep, 1, seed)
    assert torch.equal(batch.ranked[0] - n_pad, alone.ranked[0])
    assert torch.equal(batch.indices[0] - n_pad, alone.indices[0])
