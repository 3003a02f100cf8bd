"""Token alignment receiver (tiny Qwen3) -> sharer (tiny Llama, its own tokenizer), strategies first / longest.

Run: .venv/bin/python -m pytest tests/qc2c/models/test_align.py -q
"""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from qc2c.models.align import TokenAligner
from qc2c.models.tiny import resolve_tiny

MESSAGES = [{"role": "user", "content": "Which animal is a mammal: shark, whale or trout? Think carefully."}]


@pytest.fixture(scope="module")
def toks():
    return AutoTokenizer.from_pretrained(resolve_tiny("tiny:qwen3")), AutoTokenizer.from_pretrained(
        resolve_tiny("tiny:llama")
    )


def test_chat_alignment_sections_and_masks(toks):
    r_tok, s_tok = toks
    chat = TokenAligner(r_tok, s_tok, "first").align_chat_messages(MESSAGES)
    n = len(chat.receiver_ids)
    assert len(chat.sharer_ids) == len(chat.message_mask) == len(chat.receiver_padding_mask) == n
    assert [s["type"] for s in chat.sections] == ["template", "message", "template"]
    (a, b) = chat.sections[1]["slm_range"]
    assert all(chat.message_mask[a:b]) and not any(chat.message_mask[:a] + chat.message_mask[b:])
    # message tokens are the receiver's own tokens, decoded back to the message content
    assert r_tok.decode(chat.receiver_ids[a:b]) == MESSAGES[0]["content"]
    # template sections keep each model's own template tokens; pads only mark the shorter side
    for sec in (chat.sections[0], chat.sections[2]):
        lo, hi = sec["slm_range"]
        assert not any(chat.receiver_padding_mask[lo:hi]) or not any(chat.sharer_padding_mask[lo:hi])
        real = [i for i, p in zip(chat.sharer_ids[lo:hi], chat.sharer_padding_mask[lo:hi], strict=True) if not p]
        assert s_tok.decode(real) in chat.sharer_text
    inputs = chat.model_inputs()
    assert [int(x[0, 0, 0]) for x in inputs["kv_cache_index"]] == [-1, 1, -1]
    assert sum(x.shape[1] for x in inputs["kv_cache_index"]) == n


def test_first_and_longest_pick_pieces_as_specified(toks):
    r_tok, s_tok = toks
    first, longest = TokenAligner(r_tok, s_tok, "first"), TokenAligner(r_tok, s_tok, "longest")
    multi = 0
    for rid in range(len(r_tok)):
        if rid in r_tok.all_special_ids:
            continue
        text = r_tok.decode([rid], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        pieces = s_tok.encode(text, add_special_tokens=False)
        if len(pieces) < 2:
            continue
        multi += 1
        lengths = [len(s_tok.decode([p], clean_up_tokenization_spaces=False)) for p in pieces]
        assert first.align_token(rid) == pieces[0]
        assert longest.align_token(rid) == pieces[lengths.index(max(lengths))]
    assert multi > 0, "the tiny tokenizers split no receiver token; the test would prove nothing"


def test_special_tokens_map_by_role(toks):
    r_tok, s_tok = toks
    aligner = TokenAligner(r_tok, s_tok, "first")
    assert aligner.align_token(r_tok.eos_token_id) == s_tok.eos_token_id
    assert aligner.align_token(r_tok.pad_token_id) == s_tok.pad_token_id  # pad = eos when the sharer has none


def test_unknown_strategy_is_refused(toks):
    with pytest.raises(ValueError, match="first, longest"):
        TokenAligner(*toks, "prefix")
