"""python -m pytest tests/qc2c/eval/test_score.py -q

Batch-size invariance on the real tiny pair: predictions (and option probabilities to float32 rounding)
are identical for batch size 1 and 8, for every setting path and both protocols.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from qc2c.eval.aligned import AlignedScorer
from qc2c.eval.datasets import load_mc
from qc2c.eval.prefill import c2c_prefill, plain_prefill
from qc2c.eval.score import SettingScorer
from qc2c.models.pair import load_pair

N_ITEMS = 12


@pytest.fixture(scope="module")
def items():
    return load_mc("mini", limit=N_ITEMS).items


def _scorer(pair, fuser, setting: str, protocol: str) -> SettingScorer:
    if setting == "receiver":
        return SettingScorer(setting, pair.receiver_tokenizer, plain_prefill(pair.receiver), pair.receiver, protocol, 6)
    if setting == "sharer":
        return SettingScorer(setting, pair.sharer_tokenizer, plain_prefill(pair.sharer), pair.sharer, protocol, 6)
    prefill = c2c_prefill(pair.receiver, pair.sharer, fuser, None)
    return SettingScorer(setting, pair.receiver_tokenizer, prefill, pair.receiver, protocol, 6)


def _by_batches(scorer: SettingScorer, items, batch_size: int):
    rows = []
    for start in range(0, len(items), batch_size):
        rows += scorer.score_rows(items[start : start + batch_size])
    return rows


@pytest.mark.parametrize("protocol", ["logits", "generate"])
@pytest.mark.parametrize("setting", ["receiver", "sharer", "c2c_fp16"])
def test_batch_of_eight_equals_batch_of_one(tiny_pair, tiny_fuser, items, setting: str, protocol: str) -> None:
    scorer = _scorer(tiny_pair, tiny_fuser, setting, protocol)
    one = _by_batches(scorer, items, 1)
    eight = _by_batches(scorer, items, 8)
    assert all(r.error is None for r in one + eight), [r.error for r in one + eight if r.error]
    assert [r.pred for r in one] == [r.pred for r in eight]
    if protocol == "logits":
        for a, b in zip(one, eight):
            assert a.option_probs.keys() == b.option_probs.keys()
            assert max(abs(a.option_probs[k] - b.option_probs[k]) for k in a.option_probs) < 1e-5
    else:
        assert [r.text for r in one] == [r.text for r in eight]


def test_c2c_fusion_changes_the_receiver(tiny_pair, tiny_fuser, items) -> None:
    """The fused path is not silently the receiver alone (docs/golden.md §3, failure mode 1)."""
    alone = _scorer(tiny_pair, tiny_fuser, "receiver", "logits").score_rows(items)
    fused = _scorer(tiny_pair, tiny_fuser, "c2c_fp16", "logits").score_rows(items)
    diff = max(abs(a.option_probs[k] - b.option_probs[k]) for a, b in zip(alone, fused) for k in a.option_probs)
    assert diff > 1e-3


def test_logits_probabilities_sum_to_one_and_pred_is_argmax(tiny_pair, tiny_fuser, items) -> None:
    for row in _scorer(tiny_pair, tiny_fuser, "receiver", "logits").score_rows(items[:4]):
        assert abs(sum(row.option_probs.values()) - 1.0) < 1e-9
        assert row.pred == max(row.option_probs, key=row.option_probs.get)


def test_generate_records_text_and_extraction_rule(tiny_pair, tiny_fuser, items) -> None:
    row = _scorer(tiny_pair, tiny_fuser, "receiver", "generate").score_rows(items[:1])[0]
    assert row.text is not None and row.extraction in ("phrase", "standalone", "word_boundary", "any_char", "none")


def test_bad_item_gets_an_error_and_the_rest_of_the_batch_scores(tiny_pair, tiny_fuser, items) -> None:
    bad = replace(items[1], labels=["A", "B"])  # two labels for four choices: the prompt cannot be rendered
    scorer = _scorer(tiny_pair, tiny_fuser, "c2c_fp16", "logits")
    rows = scorer.score_rows([items[0], bad, items[2]])
    assert rows[1].error and "one label per choice" in rows[1].error and rows[1].pred is None
    good = scorer.score_rows([items[0], items[2]])
    assert [rows[0].pred, rows[2].pred] == [r.pred for r in good]
    assert rows[0].error is None and rows[2].error is None


@pytest.mark.parametrize("protocol", ["logits", "generate"])
def test_aligned_pair_scores_row_by_row_identically(protocol: str, items) -> None:
    from qc2c.fuser.sources import load_fuser
    from qc2c.models.align import TokenAligner

    pair = load_pair("tiny:qwen3", "tiny:llama", dtype=torch.float32, device="cpu")
    fuser = load_fuser("tiny:qwen3+llama")
    aligner = TokenAligner(pair.receiver_tokenizer, pair.sharer_tokenizer, "longest")
    prefill = c2c_prefill(pair.receiver, pair.sharer, fuser, None)
    scorer = AlignedScorer("c2c_fp16", pair.receiver_tokenizer, prefill, pair.receiver, protocol, 8, aligner=aligner)
    together = scorer.score_rows(items[:4])
    alone = [scorer.score_rows([it])[0] for it in items[:4]]
    assert all(r.error is None for r in together), [r.error for r in together]
    assert [r.pred for r in together] == [r.pred for r in alone]


def test_c2c_timing_splits_stages_and_leaves_no_hooks(tiny_pair, tiny_fuser, items) -> None:
    row = _scorer(tiny_pair, tiny_fuser, "c2c_fp16", "logits").score_rows(items[:2])[0]
    t = row.timing
    assert t["sharer_prefill_s"] > 0 and t["receiver_s"] > 0 and t["fuse_s"] >= 0
    assert t["sharer_prefill_s"] + t["receiver_s"] + t["fuse_s"] <= t["c2c_prefill_s"] + 1e-9
    assert not tiny_pair.receiver._forward_hooks and not tiny_pair.sharer._forward_pre_hooks
