"""Greedy decoding of a causal LM from a prefilled cache: the one decoder of qc2c.

Evaluation (`generate` protocol, the sharer's text in text-to-text settings) and `C2CModel.generate` both
continue from a prefill — a plain forward or a fused C2C prefill — through this function.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import torch
from torch import Tensor


@torch.no_grad()
def greedy_decode(
    model: Any,
    cache: Any,
    last_logits: Tensor,
    attention_mask: Tensor,
    position_ids: Tensor,
    *,
    max_new_tokens: int,
    eos_ids: Collection[int] = (),
    pad_id: int = 0,
    reference_mask: bool = False,
) -> list[list[int]]:
    """Greedy tokens per row, continuing a prefill whose last-position logits are `last_logits` (B, V);
    `cache` is extended in place.

    attention_mask / position_ids (B, L) are the prompt's. Each step feeds one token per row with the grown
    attention mask and the row's own next position (last prompt position + 1), so a row of a left-padded
    batch decodes exactly as it would alone. Prompt pads stay masked, unless `reference_mask`: upstream C2C's
    decode steps see only column 0 of the padding mask, so pads inside an aligned prompt become visible
    (docs/c2c.md); `reference_mask` reproduces that. Rows that emitted an EOS id are fed `pad_id` and
    ignored; their tokens stop at the EOS (included, as C2C counts gen_length).
    """
    device = attention_mask.device
    mask = attention_mask
    if reference_mask:
        mask = torch.cat([mask[:, :1], torch.ones_like(mask[:, 1:])], dim=1)
    batch_size = int(mask.shape[0])
    next_pos = position_ids[:, -1] + 1
    tokens = last_logits.argmax(-1)
    finished = torch.zeros(batch_size, dtype=torch.bool, device=device)
    generated: list[list[int]] = [[] for _ in range(batch_size)]
    for step in range(max_new_tokens):
        for row in range(batch_size):
            if not finished[row]:
                generated[row].append(int(tokens[row]))
        finished |= torch.tensor([int(t) in eos_ids for t in tokens], device=device)
        if bool(finished.all()) or step == max_new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
        out = model(
            input_ids=tokens.where(~finished, torch.full_like(tokens, pad_id))[:, None],
            attention_mask=mask,
            position_ids=next_pos[:, None],
            past_key_values=cache,
            use_cache=True,
        )
        next_pos = next_pos + 1
        tokens = out.logits[:, -1].argmax(-1)
    return generated
