"""Left-padded batches of rendered prompts, with the masks that make a batch score like single samples.

Every row is right-aligned (left padding), so the last column is every row's last prompt token and the
response tokens (logits protocol, same ids for every row) occupy the same trailing columns. Then:

* attention_mask (B, L): 1 on real tokens;
* position_ids (B, L): cumsum(mask) - 1, clamped at 0 on pads — a row's positions are those it would have
  alone (C2C's evaluator uses the same formula);
* fuse_mask (B, L): True on the tokens C2C fuses for that row: every instruction token for `logits`
  (response tokens are the unfused last section), every prompt token but the last for `generate`
  (`kv_cache_index = [[1,0]]*(L-1) + [[-1,0]]`). Pads are never fused;
* fused_end: the column where the fused section ends (same for every row).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from qc2c.eval.prompts import RenderedPrompt


@dataclass
class PromptBatch:
    """Shapes: input_ids, attention_mask, position_ids, fuse_mask (B, L); lengths (B,) real tokens per row."""

    input_ids: Tensor
    attention_mask: Tensor
    position_ids: Tensor
    fuse_mask: Tensor
    fused_end: int
    lengths: Tensor
    sharer_input_ids: Tensor | None = None  # aligned pairs only: the sharer's own ids, same length L
    sharer_attention_mask: Tensor | None = None
    sharer_position_ids: Tensor | None = None  # when the sharer reads another prompt (c2c_placebo)

    @property
    def size(self) -> int:
        return int(self.input_ids.shape[0])

    def to(self, device: torch.device | str) -> PromptBatch:
        return PromptBatch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.position_ids.to(device),
            self.fuse_mask.to(device),
            self.fused_end,
            self.lengths,
            None if self.sharer_input_ids is None else self.sharer_input_ids.to(device),
            None if self.sharer_attention_mask is None else self.sharer_attention_mask.to(device),
            None if self.sharer_position_ids is None else self.sharer_position_ids.to(device),
        )


def positions_from_mask(attention_mask: Tensor) -> Tensor:
    """cumsum(mask) - 1 with pads clamped to 0: (B, L) long."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def left_pad(prompts: Sequence[RenderedPrompt], pad_id: int, *, protocol: str, width: int = 0) -> PromptBatch:
    """Stack `prompts` into one left-padded batch (see the module docstring for the masks), at least `width`
    columns wide (extra left padding changes no row's result; two batches padded to one width line up)."""
    if not prompts:
        raise ValueError("cannot batch zero prompts")
    n_response = {len(p.response_ids) for p in prompts}
    if len(n_response) != 1:
        raise ValueError(f"response lengths differ across rows: {sorted(n_response)}")
    n_resp = n_response.pop()
    lengths = torch.tensor([len(p.ids) for p in prompts])
    width = max(width, int(lengths.max()))
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids = prompt.ids
        input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, width - len(ids) :] = 1
    fused_end = width - n_resp if protocol == "logits" else width - 1
    if protocol not in ("logits", "generate"):
        raise ValueError(f"unknown protocol {protocol!r} (allowed: logits, generate)")
    fuse_mask = attention_mask.bool().clone()
    fuse_mask[:, fused_end:] = False
    return PromptBatch(input_ids, attention_mask, positions_from_mask(attention_mask), fuse_mask, fused_end, lengths)


def chunks(n: int, batch_size: int) -> list[range]:
    """Index ranges of consecutive batches covering 0..n-1."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 (got {batch_size})")
    return [range(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]


def by_length(items: Sequence[object]) -> list[object]:
    """`items` ordered by prompt size (question + choices characters), longest first.

    Batching similar lengths together cuts the padding a left-padded batch computes (attention is O(L²) per
    row); scores do not depend on batch composition, so the order only changes speed. Longest first makes the
    slowest batch run first, so the ETA errs on the safe side.
    """

    def size(item: object) -> int:
        return len(getattr(item, "question", "")) + sum(len(c) for c in getattr(item, "choices", []))

    return sorted(items, key=size, reverse=True)
