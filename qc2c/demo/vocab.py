"""The demo models' tokenizers: a Qwen-style one shared by receiver and sharer, a Llama-style one of its own.

Both are byte-level BPEs trained on the world's templates, values and syllables (never on a whole name, so
every name spans several tokens) with the tiny zoo's builder (qc2c.models.tiny_tokenizers). The fixed lines
of C2C's multiple-choice prompt ("Accurately answer the following question:", the four instruction lines,
"The correct answer is") are added tokens, one token per line: the demo prompts are then about 45 tokens
instead of 140, which is what lets the whole demo zoo train on two CPU cores in minutes. The prompt *text*
is C2C's, unchanged (qc2c.eval.prompts renders it); only its segmentation is coarse.

The Llama tokenizer differs in what the token-alignment path must cope with: other ids, its own chat template
and special tokens and the Llama-3 digit split. Its merges are learnt from the receiver's corpus at the
receiver's vocabulary size, so a name splits into the same pieces in both (checked by a test), because C2C's token alignment maps each receiver token to *one* sharer
token: with names split into other pieces the sharer read mangled names (2 of 75 held-out names came through
intact; "ĠMu"+"la"+"p"+"o" arrived as "Ġ"+"la"+"p"+"o") and could not know any fact about them.
"""

from __future__ import annotations

from dataclasses import replace

from qc2c.demo.world import LABELS, World
from qc2c.eval.prompts import PROMPT_TEMPLATE, RESPONSE_TEXT, build_prompt
from qc2c.models.tiny_tokenizers import TOKENIZERS, TokenizerSpec, build_tokenizer

# The placeholder-free lines of C2C's prompt, each one added token (longest match wins, so the quoted
# "The correct answer is A/B/C/D" line stays whole and the bare response text is its own token).
PROMPT_PHRASES = tuple(
    line for line in PROMPT_TEMPLATE.split("\n") if line and "{" not in line and line != RESPONSE_TEXT
) + (RESPONSE_TEXT,)

DEMO_TOKENIZERS: dict[str, TokenizerSpec] = {
    "qwen": replace(
        TOKENIZERS["qwen"], vocab_size=610, added_tokens=(*TOKENIZERS["qwen"].added_tokens, *PROMPT_PHRASES)
    ),
    "llama": replace(TOKENIZERS["llama"], vocab_size=610, added_tokens=PROMPT_PHRASES),
}


def corpus(world: World, family: str) -> list[str]:
    """Templates, values, syllables, letters and a rendered prompt per question template."""
    lines = world.corpus_words()
    for attr_question in ("What is the color of X?", "Where does X live?"):
        prompt = build_prompt(attr_question, ["red", "blue", "green", "forest"], LABELS)
        lines += [prompt.replace(p, " ") for p in PROMPT_PHRASES] + [f"{RESPONSE_TEXT} {x}" for x in LABELS]
    lines += [f"The correct answer is {x}. Answer: {x}" for x in LABELS for _ in range(20)]
    return lines


def build_demo_tokenizer(world: World, family: str):
    """A fast HF tokenizer for `family` ("qwen" | "llama"), deterministic for a given world."""
    return build_tokenizer(DEMO_TOKENIZERS[family], corpus(world, family))
