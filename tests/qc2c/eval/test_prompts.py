"""python -m pytest tests/qc2c/eval/test_prompts.py -q"""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from qc2c.eval.datasets import load_mc
from qc2c.eval.prompts import RESPONSE_TEXT, build_prompt, option_token_ids, render, render_choices
from qc2c.models.tiny import resolve_tiny


@pytest.fixture(scope="module")
def qwen_tokenizer():
    return AutoTokenizer.from_pretrained(resolve_tiny("tiny:qwen3"))


@pytest.fixture(scope="module")
def llama_tokenizer():
    return AutoTokenizer.from_pretrained(resolve_tiny("tiny:llama"))


def test_choices_render_as_letter_dot_text_lines() -> None:
    assert render_choices(["red", "blue"], ["A", "B"]) == "A. red\nB. blue\n"
    with pytest.raises(ValueError, match="one label per choice"):
        render_choices(["red"], ["A", "B"])


def test_prompt_is_c2c_template_text() -> None:
    text = build_prompt("Why?", ["x", "y"], ["A", "B"])
    assert text.startswith("Accurately answer the following question:\n\nWhy?\n\nChoices:\nA. x\nB. y\n\n\n")
    assert '- Respond ONLY in the following format: "The correct answer is A/B/C/D".\n' in text
    assert text.endswith("besides the answer.\n\nThe correct answer is")


def test_chat_template_one_user_message_with_generation_prompt(qwen_tokenizer) -> None:
    item = load_mc("mini", limit=1).items[0]
    logits = render(qwen_tokenizer, item, protocol="logits")
    generate = render(qwen_tokenizer, item, protocol="generate")
    assert logits.instruction_ids == generate.instruction_ids and generate.response_ids == []
    assert logits.text.startswith("<|im_start|>user\nAccurately answer")
    assert logits.text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n" + RESPONSE_TEXT)
    assert qwen_tokenizer.decode(logits.response_ids) == RESPONSE_TEXT


def test_llama_template_renders_too(llama_tokenizer) -> None:
    item = load_mc("mini", limit=1).items[0]
    assert "Accurately answer" in render(llama_tokenizer, item, protocol="generate").text


def test_option_ids_are_first_token_of_space_letter(qwen_tokenizer) -> None:
    ids = option_token_ids(qwen_tokenizer, list("ABCD"))
    assert ids == [qwen_tokenizer(" " + x, add_special_tokens=False)["input_ids"][0] for x in "ABCD"]
    assert len(set(ids)) == 4


def test_unknown_protocol_is_refused(qwen_tokenizer) -> None:
    with pytest.raises(ValueError, match="unknown protocol"):
        render(qwen_tokenizer, load_mc("mini", limit=1).items[0], protocol="mc")
