"""Fused forward on the tiny pair: per-row fuse masks, the message-path seam, sparse fuse, bf16 rounding.

Run: .venv/bin/python -m pytest tests/qc2c/fuser/test_fuse.py -q
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch

from qc2c import C2CModel
from qc2c.eval.batching import left_pad
from qc2c.eval.prompts import RenderedPrompt
from qc2c.fuser.fuse import FusePlan, fused_forward
from qc2c.fuser.seam import SectionKV, Transmitted

QUESTIONS = ["What is two plus two?", "Name a large animal that lives in the sea and breathes air.", "Why?"]


@pytest.fixture(scope="module")
def model() -> C2CModel:
    return C2CModel.from_pretrained("tiny:qwen3", "tiny:qwen2", "tiny:qwen3+qwen2")


def prompt(model: C2CModel, q: str) -> list[int]:
    return model.chat_inputs([{"role": "user", "content": q}])["input_ids"][0].tolist()


def standard_index(n: int, last: int = 1) -> list[torch.Tensor]:
    return [torch.tensor([[[1, 0]] * (n - last)]), torch.tensor([[[-1, 0]] * last])]


@dataclass
class PassThrough:
    """A message path that sends the sharer KV unchanged, keeping the positions `keep(section)` says."""

    keep: object = None
    needs_sharer_attention: bool = False
    seen: list[SectionKV] = field(default_factory=list)

    def transmit(self, section: SectionKV) -> Transmitted:
        self.seen.append(section)
        kept = section.fuse_mask.clone() if self.keep is None else self.keep(section)
        rows = [
            {"nbytes": 10, "n_tokens_sent": int(k.sum()), "nbytes_breakdown": {"payload": 8, "header": 2}} for k in kept
        ]
        return Transmitted(sharer=section.sharer, kept=kept, records=rows)


@pytest.mark.parametrize("tail", [0, 4])
def test_left_padded_batch_equals_rows_one_by_one(model, tail):
    # evaluation's batches (qc2c.eval.batching.left_pad) through the fused forward, as qc2c.eval.prefill runs it
    # tail 0: generate protocol (last prompt token unfused); tail 4: logits protocol (appended response text)
    answer = model.pair.receiver_tokenizer.encode("The correct answer is")[:tail]
    prompts = [RenderedPrompt(prompt(model, q), answer, q) for q in QUESTIONS]
    rows = [p.ids for p in prompts]
    last = max(tail, 1)
    batch = left_pad(prompts, model.pair.receiver_tokenizer.pad_token_id, protocol="logits" if tail else "generate")
    assert batch.input_ids.shape[1] == max(map(len, rows)) and not batch.attention_mask.all()
    plan = FusePlan.from_runs(batch.fuse_mask, batch.input_ids.shape[1] - batch.fused_end)
    with torch.no_grad():
        got = fused_forward(
            model.pair.receiver,
            model.pair.sharer,
            model.fuser,
            plan,
            batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
        )
    assert got.logits.shape[:2] == (3, last)
    for i, r in enumerate(rows):
        one = model.forward(torch.tensor([r]), kv_cache_index=standard_index(len(r), last))
        assert torch.allclose(got.logits[i], one.logits[0], atol=1e-4), i
        assert torch.equal(got.logits[i].argmax(-1), one.logits[0].argmax(-1))
        n = len(r)
        for t in range(len(one.cache.layers)):  # the row's own positions of the fused cache
            assert torch.allclose(got.cache.layers[t].keys[i, :, -n:], one.cache.layers[t].keys[0], atol=1e-4)


def test_sparse_fuse_with_everything_kept_equals_dense(model):
    ids = torch.tensor([prompt(model, QUESTIONS[1])])
    index = standard_index(ids.shape[1])
    dense = model.forward(ids, kv_cache_index=index)
    path = PassThrough()
    sparse = model.forward(ids, kv_cache_index=index, message_path=path)
    for a, b in zip(dense.cache.layers, sparse.cache.layers, strict=True):
        assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)
    assert torch.equal(dense.logits, sparse.logits)
    (section,) = path.seen
    n = ids.shape[1] - 1
    assert section.fuse_mask.shape == (1, n) and len(section.sharer) == 3 and len(section.receiver) == 4
    assert section.sharer[0][0].shape == (1, 2, n, 12) and section.receiver[0][0].shape == (1, 2, n, 16)
    assert sparse.records == [{"nbytes": 10, "n_tokens_sent": n, "nbytes_breakdown": {"payload": 8, "header": 2}}]


def test_positions_not_kept_keep_the_receivers_own_kv(model):
    ids = torch.tensor([prompt(model, QUESTIONS[1])])
    index = standard_index(ids.shape[1])
    plain = model.forward(ids)  # receiver alone
    dense = model.forward(ids, kv_cache_index=index)

    def every_other(section):
        kept = section.fuse_mask.clone()
        kept[:, 1::2] = False
        return kept

    sparse = model.forward(ids, kv_cache_index=index, message_path=PassThrough(every_other))
    n = ids.shape[1] - 1
    for t in range(4):
        got, fused, own = sparse.cache.layers[t].keys, dense.cache.layers[t].keys, plain.cache.layers[t].keys
        assert torch.equal(got[:, :, 0:n:2], fused[:, :, 0:n:2])
        assert torch.equal(got[:, :, 1:n:2], own[:, :, 1:n:2])
        assert not torch.equal(fused[:, :, 1:n:2], own[:, :, 1:n:2])  # fusion does change those positions


def test_sharer_attention_is_given_when_asked(model):
    ids = torch.tensor([prompt(model, QUESTIONS[0])])
    path = PassThrough(needs_sharer_attention=True)
    model.forward(ids, kv_cache_index=standard_index(ids.shape[1]), message_path=path)
    attn = path.seen[0].sharer_attention
    n = ids.shape[1] - 1
    assert len(attn) == 3 and attn[0].shape == (1, 4, n, n)
    assert torch.allclose(attn[0].sum(-1), torch.ones(1, 4, n), atol=1e-5)
    assert model.pair.sharer.config._attn_implementation == "sdpa"  # eager only while the probabilities are needed


def test_bf16_cache_gets_the_float32_fused_term_rounded_once():
    m = C2CModel.from_pretrained("tiny:qwen3", "tiny:qwen2", "tiny:qwen3+qwen2", dtype=torch.bfloat16)
    ids = torch.tensor([prompt(m, QUESTIONS[0])])
    n = ids.shape[1] - 1
    out = m.forward(ids, kv_cache_index=standard_index(ids.shape[1]))
    with torch.no_grad():  # manual: both models alone on the fused section, projector by hand
        r = m.pair.receiver(input_ids=ids[:, :n], use_cache=True).past_key_values
        s = m.pair.sharer(input_ids=ids[:, :n], use_cache=True).past_key_values
        for t, src in m.fuser.layer_map.items():
            p = m.fuser.projectors[t]
            k, v = p((s.layers[src].keys, s.layers[src].values), (r.layers[t].keys, r.layers[t].values))
            assert k.dtype == torch.float32  # the fused term is float32 ...
            assert torch.equal(out.cache.layers[t].keys[:, :, :n], k.to(torch.bfloat16))  # ... rounded once
            assert torch.equal(out.cache.layers[t].values[:, :, :n], v.to(torch.bfloat16))
    assert out.cache.layers[0].keys.dtype == torch.bfloat16


def test_plan_from_runs_splits_at_fused_run_ends():
    mask = torch.tensor([[0, 1, 1, 0, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    assert FusePlan.from_runs(mask, 2).ends == [3, 6, 8]
    with pytest.raises(ValueError, match="last section"):
        FusePlan.from_runs(mask, 3)
    index = [torch.tensor([[[-1, 0]] * 2]), torch.tensor([[[1, 0]] * 3]), torch.tensor([[[-1, 0]]])]
    plan = FusePlan.from_kv_cache_index(index, batch=2)
    assert plan.ends == [2, 5, 6] and plan.fuse_mask[:, 2:5].all() and not plan.fuse_mask[:, :2].any()


def test_gradients_reach_the_projectors_through_the_fused_cache(model):
    # training runs the same forward with grad: the last section's loss must depend on the projectors
    ids = torch.tensor([prompt(model, QUESTIONS[0])])
    plan = FusePlan.from_kv_cache_index(standard_index(ids.shape[1]), 1)
    fuser = model.fuser
    fuser.projectors.train()
    try:
        out = fused_forward(model.pair.receiver, model.pair.sharer, fuser, plan, ids)
        out.logits.float().logsumexp(-1).sum().backward()
        grads = [p.key_in.weight.grad for p in fuser.projectors]
        assert all(g is not None and g.abs().sum() > 0 for g in grads)
    finally:
        fuser.projectors.eval()
        fuser.projectors.zero_grad(set_to_none=True)
        model.pair.receiver.zero_grad(set_to_none=True)


def test_sdpa_sharer_switches_to_eager_for_attention_and_back():
    m = C2CModel.from_pretrained("tiny:qwen3", "tiny:qwen2", "tiny:qwen3+qwen2", attn_implementation="sdpa")
    ids = torch.tensor([prompt(m, QUESTIONS[0])])
    path = PassThrough(needs_sharer_attention=True)
    m.forward(ids, kv_cache_index=standard_index(ids.shape[1]), message_path=path)
    assert path.seen[0].sharer_attention[0].shape[-1] == ids.shape[1] - 1
    assert m.pair.sharer.config._attn_implementation == "sdpa"
