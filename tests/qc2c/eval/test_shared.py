"""python -m pytest tests/qc2c/eval/test_shared.py -q

The shared path (`qc2c.eval.shared`: one receiver and one sharer prefill per batch for every C2C setting)
against the per-setting path, side by side on the same items: every setting's predictions, option
probabilities, generated text, message bytes and records are identical (float32 CPU) for the C2C settings,
and the baselines (the model alone, in two forwards) predict the same with probabilities within 1e-5, on the
tiny pair and on the demo pair; the receiver's shared cache is never changed by a setting's fusion.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest
import torch

from qc2c.bench.eval import build_codec_for
from qc2c.eval.batching import by_length
from qc2c.eval.datasets import load_mc
from qc2c.eval.settings import build_scorers
from qc2c.eval.shared import cache_view, same_rows, score_settings, shareable

SETTINGS = ["receiver", "sharer", "c2c_fp16", "c2c_placebo", "compressed"]


def _strip(d: dict[str, Any]) -> dict[str, Any]:
    """A row's JSON without timings (wall-clock seconds differ from run to run)."""
    return {k: _strip(v) if isinstance(v, dict) else v for k, v in d.items() if k != "timing" and not k.endswith("_s")}


def _assert_same(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> None:
    """C2C rows identical; the models alone: same rows but for probabilities within 1e-5 (`same_rows`)."""
    assert same_rows(old, new)
    assert [{k: v for k, v in r.items() if k not in ("receiver", "sharer")} for r in old] == [
        {k: v for k, v in r.items() if k not in ("receiver", "sharer")} for r in new
    ]
    moved = copy.deepcopy(new)
    probs = moved[0]["receiver"].get("option_probs")
    if probs:  # the logits protocol: the tolerance is tight enough to see a real change
        moved[0]["receiver"]["option_probs"] = {k: v + 1e-4 for k, v in probs.items()}
        assert not same_rows(old, moved)


def _both_paths(pair, fuser, items, protocol: str, batch: int) -> tuple[list[Any], list[Any]]:
    scorers = build_scorers(
        SETTINGS, pair, fuser, build_codec_for(fuser, pair), protocol=protocol, max_new_tokens=6, device="cpu"
    )
    assert shareable(scorers) == ["receiver", "sharer", "c2c_fp16", "compressed"]
    for scorer in scorers.values():
        scorer.use_dataset(items)
    out: dict[bool, list[Any]] = {False: [], True: []}
    ordered = by_length(items)
    for start in range(0, len(ordered), batch):
        chunk = ordered[start : start + batch]
        for shared in (False, True):  # interleaved: a stateful codec sees the same calls in both
            rows = score_settings(scorers, chunk, shared=shared)
            assert list(rows) == SETTINGS
            out[shared] += [{k: _strip(v[j].to_json(it.answer)) for k, v in rows.items()} for j, it in enumerate(chunk)]
    return out[False], out[True]


@pytest.mark.parametrize("protocol", ["logits", "generate"])
def test_shared_prefill_equals_per_setting_tiny(tiny_pair, tiny_fuser, protocol: str) -> None:
    items = load_mc("mini", limit=40 if protocol == "logits" else 12).items  # 40: widths on both sides of 192
    old, new = _both_paths(tiny_pair, tiny_fuser, items, protocol, 16 if protocol == "logits" else 6)
    assert all(r[s]["error"] is None for r in old for s in SETTINGS)
    assert all(r["compressed"]["nbytes"] < r["c2c_fp16"]["nbytes"] for r in new)
    _assert_same(old, new)


def test_shared_prefill_equals_per_setting_demo() -> None:
    from qc2c.fuser.sources import load_fuser
    from qc2c.models.pair import load_pair

    pair = load_pair("demo:receiver", "demo:sharer", dtype=torch.float32, device="cpu")
    fuser = load_fuser("demo:receiver+sharer").to(dtype=torch.float32)
    items = load_mc("demo", limit=(170, 200)).items  # both subjects
    old, new = _both_paths(pair, fuser, items, "logits", 16)
    assert {r["c2c_fp16"]["pred"] for r in old}  # scored
    _assert_same(old, new)


def test_fusing_into_a_view_leaves_the_shared_cache_alone(tiny_pair) -> None:
    from transformers import DynamicCache

    model = tiny_pair.receiver
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        model(input_ids=ids, use_cache=True, past_key_values=cache)
    before = [(lay.keys, lay.values, lay.keys.clone()) for lay in cache.layers]
    view = cache_view(cache)
    view.layers[0].keys = torch.zeros_like(view.layers[0].keys)  # what fusion does: replace, never write into
    with torch.no_grad():
        model(input_ids=torch.tensor([[6]]), use_cache=True, past_key_values=view)
    assert view.get_seq_length() == 6 and cache.get_seq_length() == 5
    for lay, (k, v, k_copy) in zip(cache.layers, before):
        assert lay.keys is k and lay.values is v and torch.equal(lay.keys, k_copy)


def test_a_bad_item_falls_back_to_per_setting_errors(tiny_pair, tiny_fuser) -> None:
    items = load_mc("mini", limit=4).items
    bad = replace(items[0], question=None)  # cannot be rendered
    scorers = build_scorers(
        ["c2c_fp16", "compressed"],
        tiny_pair,
        tiny_fuser,
        build_codec_for(tiny_fuser, tiny_pair),
        protocol="logits",
        max_new_tokens=6,
        device="cpu",
    )
    batch = [bad, *items[1:]]
    old = score_settings(scorers, batch, shared=False)
    new = score_settings(scorers, batch, shared=True)
    for name in scorers:
        assert [_strip(r.to_json("A")) for r in old[name]] == [_strip(r.to_json("A")) for r in new[name]]
    assert new["c2c_fp16"][0].error and not new["c2c_fp16"][1].error
