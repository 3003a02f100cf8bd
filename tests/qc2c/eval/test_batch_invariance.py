"""A sample's numbers do not depend on its batch: `python -m pytest tests/qc2c/eval/test_batch_invariance.py -q`.

The compressed setting on the real tiny pair, 16 mini items scored one at a time and as one batch of 16:
message bytes (total and every part) and tokens sent are exactly equal, predictions are equal, and option
probabilities agree to float32 rounding (the batched matmuls and attention sum in another order; that is the
only difference left, about 1e-7 here).
"""

from __future__ import annotations

import pytest

from qc2c.config import kv_config
from qc2c.eval.batching import by_length
from qc2c.eval.datasets import load_mc
from qc2c.eval.prefill import c2c_prefill
from qc2c.eval.score import SettingScorer
from qc2c.kv.codec import build_codec

KVS = {
    "smoke": {"quant": {"scheme": "int4", "group_size": 32}, "selection": {"method": "knorm", "keep": 0.5}},
    "random": {"selection": {"method": "random", "keep": 0.3}},
    "attention": {"selection": {"method": "attention", "keep": 0.3}},
    "budget": {"budget": {"bytes_per_sample": 20000}},
}
MESSAGE_KEYS = ("nbytes", "nbytes_breakdown", "nbytes_closed_form", "n_tokens_sent", "n_tokens", "n_tokens_per_scheme")


@pytest.fixture(scope="module")
def items():
    return by_length(load_mc("mini", limit=16).items)  # the runner's batch order: lengths differ within a batch


@pytest.mark.parametrize("name", sorted(KVS))
def test_batch_of_sixteen_equals_one_at_a_time_bytes_exactly(tiny_pair, tiny_fuser, items, name: str) -> None:
    pair, fuser = tiny_pair, tiny_fuser
    n_sharer, n_receiver = pair.sharer.config.num_hidden_layers, pair.receiver.config.num_hidden_layers
    kv = kv_config(KVS[name])
    codec = build_codec(kv, layer_map=fuser.layer_map, n_sharer_layers=n_sharer, n_receiver_layers=n_receiver)
    prefill = c2c_prefill(pair.receiver, pair.sharer, fuser, codec)
    scorer = SettingScorer("compressed", pair.receiver_tokenizer, prefill, pair.receiver, "logits", 64)
    alone = [scorer.score_rows([item])[0] for item in items]
    together = scorer.score_rows(items)
    assert all(r.error is None for r in alone + together), [r.error for r in alone + together if r.error]
    for a, b in zip(alone, together):
        assert {k: a.message.get(k) for k in MESSAGE_KEYS} == {k: b.message.get(k) for k in MESSAGE_KEYS}
    assert [r.pred for r in alone] == [r.pred for r in together]
    worst = max(abs(a.option_probs[k] - b.option_probs[k]) for a, b in zip(alone, together) for k in a.option_probs)
    assert worst < 1e-5
