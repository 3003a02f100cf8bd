"""C2CModel entry point on the tiny pair: reference forward/generate semantics, save -> load round trip.

Run: .venv/bin/python -m pytest tests/qc2c/test_c2c_model.py -q
"""

from __future__ import annotations

import pytest
import torch

from qc2c import C2CModel, load_fuser
from qc2c.eval.batching import left_pad
from qc2c.eval.prefill import c2c_prefill
from qc2c.eval.prompts import RenderedPrompt
from qc2c.fuser.checkpoint import save_fuser
from qc2c.models.decode import greedy_decode

CHAT = [{"role": "user", "content": "Which planet is known as the red planet?"}]


@pytest.fixture(scope="module")
def model() -> C2CModel:
    return C2CModel.from_pretrained("tiny:qwen3", "tiny:qwen2", "tiny:qwen3+qwen2")


def test_forward_without_index_is_the_plain_receiver(model):
    ids = model.chat_inputs(CHAT)["input_ids"]
    out = model.forward(ids)
    with torch.no_grad():
        plain = model.pair.receiver(input_ids=ids)
    assert torch.equal(out.logits, plain.logits)


def test_fusion_changes_the_last_token_logits(model):
    inputs = model.chat_inputs(CHAT)
    fused = model.forward(**inputs).logits
    plain = model.forward(inputs["input_ids"]).logits[:, -1:]
    assert fused.shape == plain.shape and not torch.allclose(fused, plain, atol=1e-3)


def test_generate_fuses_every_prompt_token_but_the_last(model):
    inputs = model.chat_inputs(CHAT)
    ids = inputs["input_ids"]
    seq = model.generate(ids, max_new_tokens=5)
    assert seq.shape == (1, ids.shape[1] + 5) and torch.equal(seq[:, : ids.shape[1]], ids)
    first = model.forward(**inputs).logits[0, -1].argmax()
    assert seq[0, ids.shape[1]] == first
    # each next token is the receiver's greedy step on the fused cache: replay it by hand
    out = model.forward(**inputs)
    cache, tok = out.cache, first.view(1, 1)
    with torch.no_grad():
        for step in range(1, 5):
            pos = torch.tensor([[ids.shape[1] + step - 1]])
            tok = (
                model.pair.receiver(input_ids=tok, position_ids=pos, past_key_values=cache)
                .logits[:, -1]
                .argmax(-1, keepdim=True)
            )
            assert seq[0, ids.shape[1] + step] == tok[0, 0]


def test_generate_stops_at_eos_and_fills(model):
    ids = model.chat_inputs(CHAT)["input_ids"]
    free = model.generate(ids, max_new_tokens=6)
    gen = free[0, ids.shape[1] :].tolist()
    k = max(range(len(gen)), key=lambda i: gen.index(gen[i]))  # a token whose first occurrence is latest
    eos = gen[k]  # pretend it is the eos: generation stops right after its first occurrence
    seq = model.generate(ids, max_new_tokens=6, eos_token_id=eos)
    assert seq.shape[1] == ids.shape[1] + gen.index(eos) + 1 and seq[0, -1] == eos


def test_a_row_that_stops_early_is_filled_with_the_eos(model):
    # two prompts of one length (no padding): stop at a token the first row emits before the second does
    first, second = (model.chat_inputs([{"role": "user", "content": q}])["input_ids"] for q in ("Ok?", "Hi?"))
    n = first.shape[1]
    assert second.shape[1] == n
    alone = [model.generate(x, max_new_tokens=6)[0, n:].tolist() for x in (first, second)]
    step = next(i for i, t in enumerate(alone[0]) if t not in alone[1][: i + 1])
    eos = alone[0][step]
    seq = model.generate(torch.cat([first, second]), max_new_tokens=6, eos_token_id=eos)
    cut = alone[1].index(eos) + 1 if eos in alone[1] else 6
    assert seq.shape == (2, n + cut)
    assert seq[0, n:].tolist() == (alone[0][: step + 1] + [eos] * cut)[:cut]
    assert seq[1, n:].tolist() == alone[1][:cut]


def test_evaluation_batch_decodes_like_generate_row_by_row(model):
    # evaluation's path: a left-padded batch, the C2C prefill, the shared greedy decoder
    rows = [
        model.chat_inputs([{"role": "user", "content": q}])["input_ids"][0].tolist()
        for q in ("Hi?", CHAT[0]["content"])
    ]
    batch = left_pad(
        [RenderedPrompt(r, [], "") for r in rows], model.pair.receiver_tokenizer.pad_token_id, protocol="generate"
    )
    assert not batch.attention_mask.all()
    prefill = c2c_prefill(model.pair.receiver, model.pair.sharer, model.fuser, None)(batch)
    new = greedy_decode(
        model.pair.receiver,
        prefill.cache,
        prefill.logits_last,
        batch.attention_mask,
        batch.position_ids,
        max_new_tokens=4,
    )
    for i, r in enumerate(rows):
        assert new[i] == model.generate(torch.tensor([r]), max_new_tokens=4)[0, len(r) :].tolist()


def test_kv_cache_index_must_cover_the_input(model):
    ids = model.chat_inputs(CHAT)["input_ids"]
    with pytest.raises(ValueError, match="add up to"):
        model.forward(ids, kv_cache_index=[torch.tensor([[[1, 0]] * 3]), torch.tensor([[[-1, 0]]])])


def test_save_load_round_trip_gives_identical_outputs(model, tmp_path):
    fuser = model.fuser
    root = save_fuser(tmp_path / "copy", list(fuser.projectors), fuser.layer_map, fuser.recipe, fuser.init_args)
    assert load_fuser(root).sha256 == fuser.sha256  # same bytes, same content hash
    again = C2CModel.from_pretrained("tiny:qwen3", "tiny:qwen2", str(root / "final"))
    inputs = model.chat_inputs(CHAT)
    assert torch.equal(again.forward(**inputs).logits, model.forward(**inputs).logits)


def test_aligned_pair_generates(model):
    m = C2CModel.from_pretrained("tiny:qwen3", "tiny:llama", "tiny:qwen3+llama", alignment="longest")
    inputs = m.chat_inputs(CHAT)
    assert [int(x[0, 0, 0]) for x in inputs["kv_cache_index"]] == [-1, 1, -1]
    seq = m.generate(**inputs, max_new_tokens=3)
    assert seq.shape[1] == inputs["input_ids"].shape[1] + 3


def test_reference_decode_sees_prompt_pads_padded_decode_does_not():
    # §1.2 quirk: upstream decode steps slice the padding mask to its first column, so aligner pads in the
    # prompt become visible; decode_mask="padded" keeps them masked. Replay both by hand.
    m = C2CModel.from_pretrained("tiny:qwen3", "tiny:llama", "tiny:qwen3+llama", alignment="longest")
    inputs = m.chat_inputs(CHAT)
    mask = inputs["attention_mask"]
    assert not mask.all(), "the aligned tiny prompt has no receiver pads; the test would prove nothing"
    n = mask.shape[1]
    seen = []
    for mode, step_mask in (
        ("reference", torch.ones(1, n + 1, dtype=torch.long)),
        ("padded", torch.cat([mask, torch.ones(1, 1, dtype=torch.long)], 1)),
    ):
        seq = m.generate(**inputs, max_new_tokens=2, decode_mask=mode)
        out = m.forward(**inputs)
        first = out.logits[:, -1].argmax(-1, keepdim=True)
        with torch.no_grad():
            second = m.pair.receiver(
                input_ids=first, attention_mask=step_mask, position_ids=torch.tensor([[n]]), past_key_values=out.cache
            ).logits[:, -1]
        seen.append(second)
        assert seq[0, n] == first[0, 0] and seq[0, n + 1] == second.argmax(-1)[0], mode
    assert not torch.allclose(seen[0], seen[1], atol=1e-4)  # the two masks do give different steps


def test_public_api_resolves_lazily():
    import subprocess
    import sys

    code = "import sys, qc2c; assert 'transformers' not in sys.modules; [getattr(qc2c, n) for n in qc2c.__all__]"
    subprocess.run([sys.executable, "-c", code], check=True)
