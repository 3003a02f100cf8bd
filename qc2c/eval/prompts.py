"""Prompt rendering for multiple-choice evaluation, exactly as C2C's unified evaluator builds it.

Source: thu-nics/C2C `rosetta/utils/evaluate.py::build_prompt` (use_cot=False, use_template=True) and
`script/evaluation/unified_evaluator.py` (docs/c2c.md §5):

* choices are rendered as "A. text\\n" (one line each, in the item's label order);
* the prompt is ONE user message passed through the model's own chat template with
  `add_generation_prompt=True, enable_thinking=False` (templates without that variable ignore it: jinja
  leaves unknown variables undefined);
* the logits protocol appends the response text "The correct answer is" after the generation prompt and
  reads the option letters at its last position.

A prompt change is a diff in this file only. The instruction text says "A/B/C/D" even for sets with more
options: that is C2C's text, kept verbatim so accuracies stay comparable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

PROMPT_TEMPLATE = (
    "Accurately answer the following question:\n\n"
    "{question}\n\n"
    "Choices:\n"
    "{choices}\n\n"
    "Instructions:\n"
    "- Carefully read the question and all options.\n"
    "- Select the single most correct answer.\n"
    '- Respond ONLY in the following format: "The correct answer is A/B/C/D".\n'
    "- Do not include any explanations, additional text, or punctuation besides the answer.\n\n"
    "The correct answer is"
)
RESPONSE_TEXT = "The correct answer is"
# Text-to-text (C2C's `two_stage` baselines): the sharer writes, the receiver reads its text before the question.
ANALYSIS_TEMPLATE = (
    "Briefly analyze the following question and its choices. In one short paragraph, give the background "
    "knowledge needed to answer it.\n\n"
    "{question}\n\n"
    "Choices:\n"
    "{choices}"
)
CONTEXT_TEMPLATE = "Context from another model:\n{text}\n\nQuestion:\n{question}"


@dataclass(frozen=True)
class RenderedPrompt:
    """A prompt as token ids for one tokenizer.

    instruction_ids: the chat-templated user message incl. the generation prompt (fused by C2C);
    response_ids: the appended response text (logits protocol only; never fused, empty for generate).
    """

    instruction_ids: list[int]
    response_ids: list[int]
    text: str

    @property
    def ids(self) -> list[int]:
        return self.instruction_ids + self.response_ids


def render_choices(choices: Sequence[str], labels: Sequence[str]) -> str:
    """`"A. text\\n"` per choice; raises ValueError when labels and choices disagree or are empty."""
    if not choices or len(choices) != len(labels):
        raise ValueError(f"an item needs one label per choice (got {len(choices)} choices, {len(labels)} labels)")
    return "".join(f"{label}. {text}\n" for label, text in zip(labels, choices))


def build_prompt(question: str, choices: Sequence[str], labels: Sequence[str]) -> str:
    """C2C's English multiple-choice prompt (use_cot=False, use_template=True)."""
    return PROMPT_TEMPLATE.replace("{question}", question).replace("{choices}", render_choices(choices, labels))


def chat_text(tokenizer: Any, prompt: str) -> str:
    """The prompt as one user message through the tokenizer's chat template, with the generation prompt."""
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}],
        tokenize=False,
        add_generation_prompt=True,
        enable_thinking=False,
    )


def render(tokenizer: Any, item: Any, *, protocol: str) -> RenderedPrompt:
    """Token ids of `item` (an MCItem: question, choices, labels) for `protocol` ("logits" | "generate").

    Instruction and response are tokenized separately with `add_special_tokens=False` (the chat template
    already holds BOS/role tokens), so the response ids are identical for every item and the fused section
    ends at the same column for every left-padded row.
    """
    text = chat_text(tokenizer, build_prompt(item.question, item.choices, item.labels))
    instruction_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if protocol == "logits":
        response_ids = tokenizer(RESPONSE_TEXT, add_special_tokens=False)["input_ids"]
        text = text + RESPONSE_TEXT
    elif protocol == "generate":
        response_ids = []
    else:
        raise ValueError(f"unknown protocol {protocol!r} (allowed: logits, generate)")
    if not instruction_ids:
        raise ValueError("the chat template rendered an empty prompt")
    return RenderedPrompt(list(instruction_ids), list(response_ids), text)


def render_analysis(tokenizer: Any, item: Any) -> RenderedPrompt:
    """The sharer's `text_analysis` prompt (generate protocol): a short paragraph of background to the question."""
    prompt = ANALYSIS_TEMPLATE.format(question=item.question, choices=render_choices(item.choices, item.labels))
    text = chat_text(tokenizer, prompt)
    return RenderedPrompt(list(tokenizer(text, add_special_tokens=False)["input_ids"]), [], text)


def with_context(item: Any, text: str) -> Any:
    """`item` whose question carries the sharer's text before it (the receiver's text-to-text prompt)."""
    return replace(item, question=CONTEXT_TEMPLATE.format(text=text, question=item.question))


def option_token_ids(tokenizer: Any, labels: Sequence[str]) -> list[int]:
    """First token of `encode(" X")` for each option letter X (C2C's logits protocol).

    Raises ValueError when two letters share a first token: their probabilities could not be told apart.
    """
    ids = [tokenizer(" " + label, add_special_tokens=False)["input_ids"][0] for label in labels]
    if len(set(ids)) != len(ids):
        raise ValueError(f"option letters {list(labels)} do not map to distinct first tokens: {ids}")
    return ids
