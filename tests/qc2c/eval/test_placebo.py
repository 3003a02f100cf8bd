"""python -m pytest tests/qc2c/eval/test_placebo.py -q

c2c_placebo: each item fuses the c2c_fp16 message of a fixed, seeded partner item.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from qc2c.eval.datasets import load_mc
from qc2c.eval.placebo import derangement
from qc2c.eval.settings import build_scorers
from qc2c.models.pair import load_pair

N_ITEMS = 10


@pytest.fixture(scope="module")
def items():
    return load_mc("mini", limit=N_ITEMS).items


def _scorers(pair, fuser, protocol="logits", seed=0):
    return build_scorers(
        ["c2c_fp16", "c2c_placebo"], pair, fuser, None, protocol=protocol, max_new_tokens=4, device="cpu", seed=seed
    )


def _score(scorer, items, batch_size):
    scorer.use_dataset(items)
    rows = []
    for start in range(0, len(items), batch_size):
        rows += scorer.score_rows(items[start : start + batch_size])
    return rows


def test_derangement_never_pairs_an_item_with_itself_and_ignores_order() -> None:
    ids = [f"q{i}" for i in range(25)]
    partners = derangement(ids, seed=3)
    assert sorted(partners) == sorted(partners.values()) == sorted(ids)
    assert all(a != b for a, b in partners.items())
    assert derangement(list(reversed(ids)), seed=3) == partners
    assert derangement(ids, seed=4) != partners


def test_derangement_refuses_a_single_item() -> None:
    with pytest.raises(ValueError, match="at least two items"):
        derangement(["only"], seed=0)


def test_partner_ids_are_recorded_differ_and_do_not_depend_on_batching(tiny_pair, tiny_fuser, items) -> None:
    placebo = _scorers(tiny_pair, tiny_fuser)["c2c_placebo"]
    one = _score(placebo, items, 1)
    four = _score(placebo, list(reversed(items)), 4)[::-1]
    assert all(r.error is None for r in one + four), [r.error for r in one + four if r.error]
    partners = [r.message["partner_id"] for r in one]
    assert partners == [r.message["partner_id"] for r in four]
    assert all(p != item.id for p, item in zip(partners, items))
    assert partners == [derangement([it.id for it in items], 0)[it.id] for it in items]
    for a, b in zip(one, four):
        assert a.pred == b.pred
        assert max(abs(a.option_probs[k] - b.option_probs[k]) for k in a.option_probs) < 1e-5
        assert a.message["nbytes"] == b.message["nbytes"] > 0


@pytest.mark.parametrize("protocol", ["logits", "generate"])
def test_placebo_on_identical_prompts_equals_c2c_fp16(tiny_pair, tiny_fuser, items, protocol: str) -> None:
    """Partners whose prompt is the item's own: the fused message is the item's own, so the rows are c2c_fp16's."""
    twins = [replace(items[0], id=f"twin{i}") for i in range(4)]
    scorers = _scorers(tiny_pair, tiny_fuser, protocol)
    fp16 = _score(scorers["c2c_fp16"], twins, 4)
    placebo = _score(scorers["c2c_placebo"], twins, 4)
    assert [r.pred for r in placebo] == [r.pred for r in fp16]
    assert [r.text for r in placebo] == [r.text for r in fp16]
    assert [r.message["nbytes"] for r in placebo] == [r.message["nbytes"] for r in fp16]
    if protocol == "logits":
        for a, b in zip(placebo, fp16):
            assert max(abs(a.option_probs[k] - b.option_probs[k]) for k in a.option_probs) < 1e-6


def test_placebo_fuses_the_partners_message_not_the_items_own(tiny_pair, tiny_fuser, items) -> None:
    scorers = _scorers(tiny_pair, tiny_fuser)
    fp16 = _score(scorers["c2c_fp16"], items, 5)
    placebo = _score(scorers["c2c_placebo"], items, 5)
    diff = max(abs(a.option_probs[k] - b.option_probs[k]) for a, b in zip(fp16, placebo) for k in a.option_probs)
    assert diff > 1e-3


def test_placebo_is_refused_for_an_aligned_pair() -> None:
    from qc2c.fuser.sources import load_fuser
    from qc2c.models.align import TokenAligner

    pair = load_pair("tiny:qwen3", "tiny:llama", dtype=torch.float32, device="cpu")
    aligner = TokenAligner(pair.receiver_tokenizer, pair.sharer_tokenizer, "longest")
    with pytest.raises(ValueError, match="not supported for aligned pairs"):
        build_scorers(
            ["c2c_placebo"],
            pair,
            load_fuser("tiny:qwen3+llama"),
            None,
            protocol="logits",
            max_new_tokens=1,
            device="cpu",
            aligner=aligner,
        )
