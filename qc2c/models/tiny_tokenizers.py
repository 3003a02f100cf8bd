"""Offline byte-level BPE tokenizers for the tiny model zoo (qc2c/models/tiny.py).

Two tokenizer families mirror the real pairs C2C uses:

* ``qwen``: Qwen2/Qwen3-style. Specials ``<|endoftext|>`` (pad), ``<|im_start|>``, ``<|im_end|>`` (eos);
  ``<think>``/``</think>`` as non-special added tokens; the Qwen2 split regex (one digit per token); a chat
  template that, like Qwen3's, appends an empty ``<think>\\n\\n</think>\\n\\n`` block to the generation prompt
  when ``enable_thinking=False``.
* ``llama``: Llama-3-style. Specials ``<|begin_of_text|>`` (bos), ``<|end_of_text|>``, ``<|start_header_id|>``,
  ``<|end_header_id|>``, ``<|eot_id|>`` (eos); the Llama-3 split regex (digits in groups of up to three); no pad
  token (as the real Llama-3); the header/eot chat template. Like the conformance fixture
  (tests/data/conformance/c2c/fixtures/models/sharer_llama), encoding adds no BOS: the template writes it.

Both are trained with ``tokenizers``' BPE trainer on one built-in corpus (the C2C prompt text, the bundled
mini questions, answer lines). Training is deterministic (ties are broken by pair order), so the same spec
gives the same ``tokenizer.json``; tests/qc2c/models/test_tiny.py checks it. Offsets are not trimmed
(``trim_offsets=False``) so ``return_offsets_mapping`` covers every character, which token alignment needs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

# Split patterns from the published tokenizer.json files of Qwen2.5 and Llama-3 (pre_tokenizer.Split.pattern).
QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)

QWEN_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)
LLAMA_TEMPLATE = (
    "{{- '<|begin_of_text|>' }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)

# C2C's multiple-choice prompt (docs/c2c.md §5), kept here verbatim so the vocabulary does not
# change when evaluation code is edited.
C2C_PROMPT = (
    "Accurately answer the following question:\n\n{question}\n\nChoices:\n{choices}\n\nInstructions:\n"
    "- Carefully read the question and all options.\n- Select the single most correct answer.\n"
    '- Respond ONLY in the following format: "The correct answer is A/B/C/D".\n'
    "- Do not include any explanations, additional text, or punctuation besides the answer.\n\n"
    "The correct answer is"
)
LETTERS = ("A", "B", "C", "D")


@dataclass(frozen=True)
class TokenizerSpec:
    """Everything that determines a tiny tokenizer's files (hashed into the cache key)."""

    family: str
    vocab_size: int  # total, including specials and added tokens
    special_tokens: tuple[str, ...]  # ids 0.. in this order
    added_tokens: tuple[str, ...]  # non-special added tokens, ids at the end
    split_pattern: str
    chat_template: str
    eos_token: str
    bos_token: str | None
    pad_token: str | None


TOKENIZERS: dict[str, TokenizerSpec] = {
    "qwen": TokenizerSpec(
        family="qwen",
        vocab_size=420,
        special_tokens=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        added_tokens=("<think>", "</think>"),
        split_pattern=QWEN_SPLIT,
        chat_template=QWEN_TEMPLATE,
        eos_token="<|im_end|>",
        bos_token=None,
        pad_token="<|endoftext|>",
    ),
    "llama": TokenizerSpec(
        family="llama",
        vocab_size=340,
        special_tokens=(
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
        ),
        added_tokens=(),
        split_pattern=LLAMA_SPLIT,
        chat_template=LLAMA_TEMPLATE,
        eos_token="<|eot_id|>",
        bos_token="<|begin_of_text|>",
        pad_token=None,
    ),
}


def training_corpus() -> list[str]:
    """The built-in corpus: C2C prompts of the bundled mini questions plus answer lines for every letter.

    The answer lines make `" A"`, `" B"`, ... single tokens, so the logits protocol reads one distinct
    token per option (C2C takes the first token of `encode(" X")`).
    """
    path = resources.files("qc2c.eval") / "data" / "mini_mc.jsonl"
    lines: list[str] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        item = json.loads(raw)
        labels, texts = item["choices"]["label"], item["choices"]["text"]
        choices = "".join(f"{label}. {text}\n" for label, text in zip(labels, texts))
        lines.append(C2C_PROMPT.format(question=item["question"], choices=choices) + f" {item['answerKey']}")
    lines += [f"The correct answer is {letter}. Answer: {letter}" for letter in LETTERS for _ in range(40)]
    lines += ["system user assistant 0 1 2 3 4 5 6 7 8 9 10 100 2024"]
    return lines


def corpus_sha256() -> str:
    return hashlib.sha256("\n".join(training_corpus()).encode("utf-8")).hexdigest()


def build_tokenizer(spec: TokenizerSpec, corpus: list[str] | None = None) -> PreTrainedTokenizerFast:
    """Train the spec's BPE on `corpus` (default: the built-in one) and wrap it as a fast HF tokenizer (not saved)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(spec.split_pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    n_trained = spec.vocab_size - len(spec.added_tokens)
    trainer = trainers.BpeTrainer(
        vocab_size=n_trained,
        special_tokens=[AddedToken(t, special=True, normalized=False) for t in spec.special_tokens],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(training_corpus() if corpus is None else corpus, trainer=trainer)
    if tok.get_vocab_size() != n_trained:
        raise RuntimeError(f"tiny tokenizer {spec.family}: corpus gave {tok.get_vocab_size()} tokens, need {n_trained}")
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in spec.added_tokens])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=spec.eos_token,
        bos_token=spec.bos_token,
        pad_token=spec.pad_token,
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = spec.chat_template
    _check_letters(fast, spec)
    return fast


def _check_letters(tokenizer: PreTrainedTokenizerFast, spec: TokenizerSpec) -> None:
    """The logits protocol needs " A" ... " D" to be single, distinct tokens (as in the real vocabularies)."""
    encoded = [tokenizer(f" {letter}", add_special_tokens=False).input_ids for letter in LETTERS]
    if any(len(ids) != 1 for ids in encoded) or len({ids[0] for ids in encoded}) != len(LETTERS):
        raise RuntimeError(f"tiny tokenizer {spec.family}: ' A'..' D' must be single distinct tokens, got {encoded}")
