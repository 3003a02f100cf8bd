"""The latent wire's task on the demo world: a short-answer (QA) view of each fact, with its context.

Each item's *source* is what the sender holds, as text: the entity's three facts (what the demo sharer
knows) and the question, e.g. "Topodi's color is red. Topodi lives in the forest. Topodi keeps a cat. What
is the color of Topodi?". The encoder reads the source; a decoder reads only the wire and the anchor
"Answer:" and must say the value (" red", then its EOS). The `latent_text` setting gives the same decoder
the source as text instead of the wire.

Splits follow the demo world's: training items are the A and C facts (never a B or V entity), `validation`
the V facts, and the reported items are the `demo` dataset's test items (A and B facts), looked up by id. An
encoder that memorised its training entities gains nothing on B: only what it reads from the source helps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import torch
from torch import Tensor

from qc2c.demo.world import ATTRIBUTES, LABELS, SUBJECTS, Fact, World
from qc2c.latent.config import DATA_SOURCES

ANCHOR = "Answer:"


@dataclass(frozen=True)
class LatentItem:
    """One fact as a short-answer question: `source` is the encoder's input, `answer` the value word."""

    id: str
    source: str
    answer: str
    options: tuple[str, ...]
    label: str  # the answer's letter among `options` (the demo MC item's answerKey)
    subject: str


def source_text(world: World, fact: Fact) -> str:
    """The entity's three facts (first statement template each) followed by the question about `fact`."""
    facts = [f for f in world.facts if f.index == fact.index]
    return " ".join(f.statements()[0] for f in facts) + " " + fact.question


def item_for(world: World, fact: Fact) -> LatentItem:
    options = ATTRIBUTES[fact.attribute]
    return LatentItem(
        id=f"demo-{fact.key}",
        source=source_text(world, fact),
        answer=fact.value,
        options=tuple(options),
        label=LABELS[options.index(fact.value)],
        subject=SUBJECTS.get(fact.split, "train"),
    )


@cache
def demo_world() -> World:
    return World()


def latent_items(source: str, split: str, world: World | None = None) -> list[LatentItem]:
    """`train` (A and C facts), `validation` (V facts) or `test` (A then B facts, the demo test split's order)."""
    if source not in DATA_SOURCES:
        raise ValueError(f"unknown latent data {source!r} (allowed: {', '.join(DATA_SOURCES)})")
    world = world or demo_world()
    splits = {"train": ("A", "C"), "validation": ("V",), "test": ("A", "B")}
    if split not in splits:
        raise ValueError(f"unknown latent split {split!r} (allowed: {', '.join(splits)})")
    return [item_for(world, f) for s in splits[split] for f in world.facts_of(s)]


def item_for_id(item_id: str, world: World | None = None) -> LatentItem:
    """The latent item of a `demo` dataset item id (`demo-B0061-pet`); KeyError for any other id."""
    world = world or demo_world()
    by_key = _facts_by_key(world)
    key = item_id.removeprefix("demo-")
    if not item_id.startswith("demo-") or key not in by_key:
        raise KeyError(f"{item_id!r} is no demo world fact (latent settings read the demo dataset only)")
    return item_for(world, by_key[key])


@cache
def _facts_by_key(world: World) -> dict[str, Fact]:
    return {f.key: f for f in world.facts}


# ---- bytes and tokens ----


def source_ids(tokenizer: Any, texts: Sequence[str], max_len: int = 256) -> tuple[Tensor, Tensor]:
    """The encoder's input: each text's token ids + 1 (0 = padding), right-padded: (ids (B, T), mask (B, T))."""
    rows = [tokenizer(t, add_special_tokens=False)["input_ids"][:max_len] for t in texts]
    width = max(1, max(len(r) for r in rows))
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long) + 1
    return ids, ids > 0


@dataclass(frozen=True)
class DecoderTokens:
    """One decoder's token ids for a batch: the anchor, each answer (+ EOS) and each source (text prompt)."""

    anchor: list[int]
    answers: list[list[int]]
    sources: list[list[int]]
    eos: int
    pad: int


def answer_ids(tokenizer: Any, value: str) -> list[int]:
    """ " value" then the decoder's EOS: what a decoder must say after the anchor."""
    return tokenizer(" " + value, add_special_tokens=False)["input_ids"] + [eos_id(tokenizer)]


def eos_id(tokenizer: Any) -> int:
    return int(tokenizer.eos_token_id)


def decoder_tokens(tokenizer: Any, items: Sequence[LatentItem]) -> DecoderTokens:
    enc = tokenizer([it.source + " " for it in items], add_special_tokens=False)["input_ids"]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id(tokenizer)
    return DecoderTokens(
        anchor=tokenizer(ANCHOR, add_special_tokens=False)["input_ids"],
        answers=[answer_ids(tokenizer, it.answer) for it in items],
        sources=[list(e) for e in enc],
        eos=eos_id(tokenizer),
        pad=int(pad),
    )
