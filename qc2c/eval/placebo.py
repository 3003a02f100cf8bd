"""The placebo control `c2c_placebo`: each item's receiver fuses the uncompressed C2C message of ANOTHER item.

If a C2C gain came from the message's content, fusing a message about a different question should lose it;
if the placebo scores like `c2c_fp16`, the gain came from fusion itself (a better-conditioned cache), not from
what the sharer read. Design:

* Partners are a fixed derangement of the dataset's evaluated items (`derangement`): built from the sorted
  item ids and the run's seed only, so the partner of an item never depends on batching, item order or
  resume; item i's partner is never i. Every progress row records its `partner_id`.
* In the batch step the sharer prefills the PARTNER's prompt (its own ids, mask and positions) while the
  receiver prefills the item's own prompt. Prompts differ in length: both are left-padded to one width, so
  they are aligned at the END, where the fixed chat/instruction tail and the response line up, and only the
  receiver positions the partner's prompt covers are fused (own prompt ∧ partner prompt). A longer partner
  prompt is read whole by the sharer; its head beyond the receiver's prompt is not fused.
* Bytes are those of the partner's fp16 message over the fused positions (`qc2c.kv.uncompressed`).

Aligned (different-tokenizer) pairs are refused: their prompts alternate template and message runs at
row-specific columns, and end alignment would fuse a partner's template tokens into message positions.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from qc2c.eval.batching import PromptBatch, left_pad
from qc2c.eval.prompts import RenderedPrompt
from qc2c.eval.score import RowScore, SettingScorer


def derangement(ids: Sequence[str], seed: int) -> dict[str, str]:
    """id -> partner id, a fixed-point-free permutation: one seeded cycle through the sorted ids.

    Depends on the set of ids and the seed only (not their order); needs at least two distinct ids.
    """
    order = sorted(set(ids))
    if len(order) != len(ids):
        raise ValueError("placebo partners need unique item ids")
    if len(order) < 2:
        raise ValueError(f"c2c_placebo needs at least two items to pair each with another (got {len(order)})")
    random.Random(seed).shuffle(order)
    return {a: b for a, b in zip(order, order[1:] + order[:1])}


@dataclass(frozen=True)
class PlaceboPrompt:
    """The item's own prompt (what the receiver reads) and its partner's (what the sharer reads)."""

    own: RenderedPrompt
    partner: RenderedPrompt
    partner_id: str

    @property
    def ids(self) -> list[int]:
        return self.own.ids


@dataclass
class PlaceboScorer(SettingScorer):
    """`c2c_placebo` for a same-tokenizer pair; call `use_dataset` with the evaluated items before scoring."""

    seed: int = 0
    partners: dict[str, Any] = field(default_factory=dict)  # item id -> partner item

    def use_dataset(self, items: Sequence[Any]) -> None:
        by_id = {item.id: item for item in items}
        self.partners = {i: by_id[p] for i, p in derangement(list(by_id), self.seed).items()}

    def prepare(self, item: Any) -> tuple[PlaceboPrompt, list[int]]:
        partner = self.partners.get(item.id)
        if partner is None:
            raise ValueError(f"c2c_placebo: item {item.id!r} has no partner (use_dataset was not given it)")
        own, options = super().prepare(item)
        return PlaceboPrompt(own, self.render(partner), partner.id), options

    def make_batch(self, prompts: Sequence[Any]) -> PromptBatch:
        width = max(max(len(p.own.ids), len(p.partner.ids)) for p in prompts)
        own = left_pad([p.own for p in prompts], self.pad_id, protocol=self.protocol, width=width)
        partner = left_pad([p.partner for p in prompts], self.pad_id, protocol=self.protocol, width=width)
        return PromptBatch(
            own.input_ids,
            own.attention_mask,
            own.position_ids,
            own.fuse_mask & partner.fuse_mask,
            own.fused_end,
            own.lengths,
            sharer_input_ids=partner.input_ids,
            sharer_attention_mask=partner.attention_mask,
            sharer_position_ids=partner.position_ids,
        )

    def _score_prepared(self, items: Sequence[Any], prepared: Sequence[tuple[Any, list[int]]]) -> list[RowScore]:
        rows = super()._score_prepared(items, prepared)
        for row, (prompt, _) in zip(rows, prepared):
            row.message["partner_id"] = prompt.partner_id
        return rows
