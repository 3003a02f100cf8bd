"""KD teachers and cache rows: the next-token logits a cache stores, and the rows they are computed on.

A teacher is either the C2C pair (`c2c_fp16`: the fuser reading the sharer's whole fp16 KV; `compressed`:
the manifest's codec in the path) or one model alone (`receiver` / `sharer`). A row is one conversation
(fused prefix [0, split), targets at the positions that predict the response, as SFT's loss) or, for a
single-model teacher with packing, a contiguous block of `max_length` tokens of the concatenated
conversations (targets everywhere). The C2C teacher runs exactly the evaluation forward (eval mode, hard
gates, no dropout) under no_grad; logits are float32 before top-K.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from qc2c.fuser.fuse import FusePlan, fused_forward
from qc2c.kd import TEACHERS  # noqa: F401  (re-exported)
from qc2c.train.data import Example, collate


@dataclass(frozen=True)
class CacheRow:
    """Token ids of one row; targets at positions [first_target, len - 1) (position t predicts t + 1)."""

    input_ids: tuple[int, ...]
    split: int | None  # the fused prefix length of a conversation row; None for a packed block
    first_target: int


def conversation_rows(examples: Sequence[Example]) -> list[CacheRow]:
    """One row per conversation: targets from the split on (the last instruction token predicts the response)."""
    return [CacheRow(tuple(e.input_ids), e.split, e.split) for e in examples]


def packed_rows(examples: Sequence[Example], max_length: int) -> list[CacheRow]:
    """The conversations' tokens concatenated in order and cut into blocks of max_length (the last may be short)."""
    stream = [t for e in examples for t in e.input_ids]
    return [
        CacheRow(tuple(stream[i : i + max_length]), None, 0)
        for i in range(0, len(stream), max_length)
        if len(stream[i : i + max_length]) >= 2
    ]


class PairTeacher:
    """The C2C pair + fuser (+ a codec: `message_path`, None = the fp16 message) as a teacher."""

    def __init__(self, pair: Any, fuser: Any, message_path: Any = None, pad_id: int = 0) -> None:
        self.pair, self.fuser, self.message_path, self.pad_id = pair, fuser, message_path, pad_id

    @torch.no_grad()
    def logits(self, rows: Sequence[CacheRow]) -> list[Tensor]:
        """Per row, (len - 1, V) float32; valid at positions >= split (the last section's predictions)."""
        examples = [
            Example(
                list(r.input_ids),
                [-100] * len(r.input_ids),
                [i < r.split for i in range(len(r.input_ids))],
                [1] * len(r.input_ids),
                r.split,
            )
            for r in rows
        ]
        batch = collate(examples, self.pad_id)
        self.fuser.projectors.eval()
        out = fused_forward(
            self.pair.receiver,
            self.pair.sharer,
            self.fuser,
            FusePlan.from_runs(batch.fuse_mask, batch.last_len),
            batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            message_path=self.message_path,
        )
        last = out.logits.float()  # (B, last_len, V): column j is position split + j of each row
        result = []
        for i, r in enumerate(rows):
            full = torch.zeros(len(r.input_ids) - 1, last.shape[-1])
            n = len(r.input_ids) - 1 - r.split
            full[r.split :] = last[i, :n]
            result.append(full)
        return result


class ModelTeacher:
    """One causal LM alone (the receiver or the sharer) as a teacher."""

    def __init__(self, model: Any, pad_id: int = 0) -> None:
        self.model, self.pad_id = model, pad_id

    @torch.no_grad()
    def logits(self, rows: Sequence[CacheRow]) -> list[Tensor]:
        width = max(len(r.input_ids) for r in rows)
        ids = torch.tensor([list(r.input_ids) + [self.pad_id] * (width - len(r.input_ids)) for r in rows])
        mask = torch.tensor([[1] * len(r.input_ids) + [0] * (width - len(r.input_ids)) for r in rows])
        self.model.eval()
        logits = self.model(input_ids=ids, attention_mask=mask).logits.float()
        return [logits[i, : len(r.input_ids) - 1] for i, r in enumerate(rows)]


def row_targets(
    rows: Sequence[CacheRow],
    logits: Sequence[Tensor],
    *,
    max_length: int,
    top_k: int,
    random_negatives: int,
    first_row: int,
    seed: int,
    packing: bool,
) -> dict[str, Tensor]:
    """The shard fields (qc2c.kd.format) of `rows`. Random negatives are drawn per row from a generator seeded by
    (seed, global row index), so a resumed build writes the same ids."""
    n, L = len(rows), max_length  # noqa: N806 - the format's symbol
    out = {
        "input_ids": torch.zeros(n, L, dtype=torch.int32),
        "attention_mask": torch.zeros(n, L, dtype=torch.uint8),
        "topk_idx": torch.zeros(n, L - 1, top_k, dtype=torch.int32),
        "topk_logits": torch.zeros(n, L - 1, top_k, dtype=torch.float16),
        "loss_mask": torch.zeros(n, L - 1, dtype=torch.uint8),
    }
    if random_negatives:
        out["rand_idx"] = torch.zeros(n, L - 1, random_negatives, dtype=torch.int32)
        out["rand_logits"] = torch.zeros(n, L - 1, random_negatives, dtype=torch.float16)
    if not packing:
        out["fuse_split"] = torch.tensor([r.split for r in rows], dtype=torch.int32)
    for i, (row, lg) in enumerate(zip(rows, logits, strict=True)):
        m = len(row.input_ids)
        out["input_ids"][i, :m] = torch.tensor(row.input_ids, dtype=torch.int32)
        out["attention_mask"][i, :m] = 1
        a, b = row.first_target, m - 1
        if b <= a:
            continue
        values, idx = lg[a:b].topk(top_k, dim=-1)
        out["topk_idx"][i, a:b], out["topk_logits"][i, a:b] = idx.to(torch.int32), values.to(torch.float16)
        out["loss_mask"][i, a:b] = 1
        if random_negatives:
            weights = torch.ones(b - a, lg.shape[-1]).scatter_(1, idx, 0.0)
            g = torch.Generator().manual_seed(seed * 1_000_003 + first_row + i)
            neg = torch.multinomial(weights, random_negatives, replacement=False, generator=g)
            out["rand_idx"][i, a:b] = neg.to(torch.int32)
            out["rand_logits"][i, a:b] = lg[a:b].gather(1, neg).to(torch.float16)
    return out
