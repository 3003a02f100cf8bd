"""python -m pytest tests/qc2c/eval/test_text.py -q

Text-to-text settings: the sharer writes, the receiver reads; bytes are the text's UTF-8 bytes.
"""

from __future__ import annotations

import pytest
import torch

from qc2c.eval.datasets import load_mc
from qc2c.eval.prompts import CONTEXT_TEMPLATE, with_context
from qc2c.eval.settings import build_scorers
from qc2c.models.pair import load_pair

MAX_TEXT = 6


@pytest.fixture(scope="module")
def items():
    return load_mc("mini", limit=6).items


def _scorers(pair, protocol="logits"):
    return build_scorers(
        ["text_answer", "text_analysis"],
        pair,
        None,
        None,
        protocol=protocol,
        max_new_tokens=4,
        device="cpu",
        text_max_new_tokens=MAX_TEXT,
    )


@pytest.fixture(scope="module")
def aligned_pair():
    return load_pair("tiny:qwen3", "tiny:llama", dtype=torch.float32, device="cpu")


@pytest.mark.parametrize("setting", ["text_answer", "text_analysis"])
def test_bytes_are_the_utf8_bytes_of_the_recorded_text(tiny_pair, items, setting: str) -> None:
    scorer = _scorers(tiny_pair)[setting]
    rows = scorer.score_rows(items)
    assert all(r.error is None for r in rows), [r.error for r in rows if r.error]
    tok = tiny_pair.receiver_tokenizer
    for row in rows:
        text = row.message["sharer_text"]
        assert row.message["nbytes"] == len(text.encode("utf-8")) == row.message["nbytes_breakdown"]["payload"]
        assert row.message["n_tokens_sent"] == len(tok(text, add_special_tokens=False)["input_ids"])
        assert 1 <= row.message["n_tokens_generated"] <= MAX_TEXT
        assert row.timing["sharer_decode_s"] >= 0 and row.timing["sharer_prefill_s"] > 0
    assert any(r.message["nbytes"] > 0 for r in rows)


def test_the_receiver_reads_the_text_before_the_question(items) -> None:
    item = with_context(items[0], "a note")
    assert item.question == CONTEXT_TEMPLATE.format(text="a note", question=items[0].question)
    assert item.question.index("a note") < item.question.index(items[0].question)


def test_text_settings_do_not_depend_on_batching(tiny_pair, items) -> None:
    scorer = _scorers(tiny_pair, "generate")["text_analysis"]
    together = scorer.score_rows(items)
    alone = [scorer.score_rows([it])[0] for it in items]
    assert [r.message["sharer_text"] for r in together] == [r.message["sharer_text"] for r in alone]
    assert [r.pred for r in together] == [r.pred for r in alone]


def test_the_answer_and_the_analysis_are_different_texts(tiny_pair, items) -> None:
    scorers = _scorers(tiny_pair)
    answer = [r.message["sharer_text"] for r in scorers["text_answer"].score_rows(items)]
    analysis = [r.message["sharer_text"] for r in scorers["text_analysis"].score_rows(items)]
    assert answer != analysis


def test_text_to_text_works_for_a_different_tokenizer_pair(aligned_pair, items) -> None:
    rows = _scorers(aligned_pair)["text_answer"].score_rows(items[:3])
    assert all(r.error is None for r in rows), [r.error for r in rows if r.error]
    tok = aligned_pair.receiver_tokenizer
    for row in rows:
        text = row.message["sharer_text"]
        assert row.message["n_tokens_sent"] == len(tok(text, add_special_tokens=False)["input_ids"])
        assert row.message["nbytes"] == len(text.encode("utf-8"))
