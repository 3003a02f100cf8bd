"""C2C settings of a different-tokenizer pair (token alignment, `qc2c.models.align`), scored row by row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from qc2c.eval.batching import PromptBatch
from qc2c.eval.prompts import RESPONSE_TEXT, build_prompt, option_token_ids
from qc2c.eval.score import RowScore, SettingScorer


@dataclass(frozen=True)
class AlignedPrompt:
    """A prompt for a different-tokenizer pair (qc2c.models.align): both id sequences have length L."""

    ids: list[int]
    sharer_ids: list[int]
    attention_mask: list[int]
    sharer_attention_mask: list[int]
    fuse_mask: list[bool]  # message-content tokens of the instruction
    last_len: int  # the unfused last section: the response (logits) or the final template run (generate)


@dataclass
class AlignedScorer(SettingScorer):
    """C2C settings of an aligned pair, scored ONE ROW AT A TIME (a documented per-row path).

    Aligned rows alternate template and message runs at row-specific columns; fusion is applied per
    section, so a batch would have to split every row at every other row's run ends, which changes what
    later tokens of a run see. Batching would therefore not equal batch size 1; this path never batches.
    Sections follow C2C's aligned evaluator (docs/c2c.md §4): message tokens fused, template tokens not, positions
    arange(L) over the padded sequence.
    """

    aligner: Any = None

    def prepare(self, item: Any) -> tuple[AlignedPrompt, list[int]]:
        prompt = build_prompt(item.question, item.choices, item.labels)
        chat = self.aligner.align_chat_messages(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, enable_thinking=False
        )
        ids, s_ids = list(chat.receiver_ids), list(chat.sharer_ids)
        mask = [0 if p else 1 for p in chat.receiver_padding_mask]
        s_mask = [0 if p else 1 for p in chat.sharer_padding_mask]
        fuse = list(chat.message_mask)
        options: list[int] = []
        if self.protocol == "logits":
            resp = self.tokenizer(RESPONSE_TEXT, add_special_tokens=False)["input_ids"]
            ids, s_ids = ids + resp, s_ids + self.aligner.align_tokens(resp)
            mask, s_mask, fuse = mask + [1] * len(resp), s_mask + [1] * len(resp), fuse + [False] * len(resp)
            last_len = len(resp)
            options = option_token_ids(self.tokenizer, item.labels)
        else:
            last_len = len(fuse) - max((i + 1 for i, f in enumerate(fuse) if f), default=len(fuse) - 1)
        return AlignedPrompt(ids, s_ids, mask, s_mask, fuse, max(1, last_len)), options

    def make_batch(self, prompts: Sequence[Any]) -> PromptBatch:
        if len(prompts) != 1:
            raise ValueError("aligned prompts are scored one row at a time")
        p = prompts[0]
        fuse = torch.tensor([p.fuse_mask])
        fuse[:, len(p.ids) - p.last_len :] = False
        return PromptBatch(
            input_ids=torch.tensor([p.ids]),
            attention_mask=torch.tensor([p.attention_mask]),
            position_ids=torch.arange(len(p.ids))[None],
            fuse_mask=fuse,
            fused_end=len(p.ids) - p.last_len,
            lengths=torch.tensor([len(p.ids)]),
            sharer_input_ids=torch.tensor([p.sharer_ids]),
            sharer_attention_mask=torch.tensor([p.sharer_attention_mask]),
        )

    def _score_prepared(self, items: Sequence[Any], prepared: Sequence[tuple[Any, list[int]]]) -> list[RowScore]:
        rows: list[RowScore] = []
        for item, one in zip(items, prepared):
            rows += super()._score_prepared([item], [one])
        return rows
