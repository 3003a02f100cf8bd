"""Token alignment receiver -> sharer for different tokenizers (docs/c2c.md §4, upstream aligner.py).

The receiver's tokenisation is the master sequence: every receiver token gets exactly one sharer token, so
both id sequences have the same length and share positions (what the fuser needs: one sharer KV per
receiver KV). In chats, template sections keep each model's own template tokens (the shorter side is
right-padded with its own pad id), and message sections use the receiver's tokens mapped 1:1:

    first    a receiver token that the sharer splits into several pieces maps to the first piece
    longest  ... to the piece whose decoded string is longest (the first on ties)

Only message tokens are fused (`message_mask`); the section split is what `kv_cache_index` encodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

Strategy = Literal["first", "longest"]
STRATEGIES: tuple[str, ...] = ("first", "longest")


@dataclass
class AlignedChat:
    """Aligned chat prompt; lists have one entry per position (length L); ranges are [start, end)."""

    receiver_ids: list[int]
    sharer_ids: list[int]
    message_mask: list[bool]
    receiver_padding_mask: list[bool]
    sharer_padding_mask: list[bool]
    sections: list[dict[str, Any]]  # {"type": "template"|"message", "slm_range": (a, b), "llm_range": (a, b)}
    receiver_text: str
    sharer_text: str

    def model_inputs(self) -> dict[str, Any]:
        """Inputs as the reference evaluator builds them (prepare_model_inputs): batch of one."""
        n = len(self.receiver_ids)
        mask = torch.tensor(self.message_mask)
        change = [0] + [i for i in range(1, n) if mask[i] != mask[i - 1]] + [n]
        index = [torch.tensor([[1 if mask[a] else -1, 0]] * (b - a)).unsqueeze(0) for a, b in zip(change, change[1:])]
        return {
            "input_ids": torch.tensor([self.receiver_ids]),
            "sharer_input_ids": torch.tensor([self.sharer_ids]),
            "attention_mask": (~torch.tensor([self.receiver_padding_mask])).long(),
            "sharer_attention_mask": (~torch.tensor([self.sharer_padding_mask])).long(),
            "position_ids": torch.arange(n).unsqueeze(0),
            "kv_cache_index": index,
        }


class TokenAligner:
    """Maps receiver ("slm") tokens to sharer ("llm") tokens; see the module docstring."""

    def __init__(self, receiver_tokenizer: Any, sharer_tokenizer: Any, strategy: Strategy = "first") -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"alignment strategy {strategy!r} is not one of {', '.join(STRATEGIES)}")
        self.slm, self.llm, self.strategy = receiver_tokenizer, sharer_tokenizer, strategy
        for tok in (self.slm, self.llm):
            if tok.pad_token_id is None:  # as upstream: pad = eos when missing
                tok.pad_token = tok.eos_token
        self._special = set(self.slm.all_special_ids)

    def _fallback(self) -> int:
        return self.llm.unk_token_id if self.llm.unk_token_id is not None else 0

    def align_token(self, slm_id: int) -> int:
        text = self.slm.decode([slm_id], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if slm_id in self._special:
            for name in ("pad_token_id", "eos_token_id", "bos_token_id", "unk_token_id"):
                if slm_id == getattr(self.slm, name) and getattr(self.llm, name) is not None:
                    return getattr(self.llm, name)
            found = self.llm.convert_tokens_to_ids(text)
            return found if found is not None else self._fallback()
        pieces = self.llm.encode(text, add_special_tokens=False)
        if not pieces:
            return self._fallback()
        if len(pieces) == 1 or self.strategy == "first":
            return pieces[0]
        lengths = [
            len(self.llm.decode([p], skip_special_tokens=False, clean_up_tokenization_spaces=False)) for p in pieces
        ]
        return pieces[lengths.index(max(lengths))]

    def align_tokens(self, slm_ids: list[int]) -> list[int]:
        return [self.align_token(int(i)) for i in slm_ids]

    def align_sequence(self, text: str) -> tuple[list[int], list[int]]:
        ids = self.slm.encode(text, add_special_tokens=True)
        return ids, self.align_tokens(ids)

    def _render(
        self,
        tok: Any,
        messages: list[dict[str, str]],
        add_generation_prompt: bool,
        enable_thinking: bool,
        remove_last_surfix: bool,
    ) -> str:
        if remove_last_surfix:
            head = tok.apply_chat_template(
                messages[:-1], tokenize=False, add_generation_prompt=True, enable_thinking=enable_thinking
            )
            return head + messages[-1]["content"]
        return tok.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt, enable_thinking=enable_thinking
        )

    @staticmethod
    def _sections(tok: Any, text: str, messages: list[dict[str, str]]) -> tuple[list[int], list[tuple[str, int, int]]]:
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        cursor, spans = 0, []
        for msg in messages:
            content = msg["content"]
            if not content:
                continue
            pos, start = -1, cursor
            while (hit := text.find(content, start)) != -1:
                after = hit + len(content)
                if after == len(text) or text[after] == "<":
                    pos = hit
                    break
                start = hit + 1
            if pos == -1:
                pos = text.find(content, cursor)
            if pos == -1:
                raise ValueError(f"message content not found in the rendered chat template: {content[:40]!r}")
            end_char = pos + len(content)
            t0 = next(i for i, (_, e) in enumerate(offsets) if e > pos)
            t1 = next((i for i, (s, _) in enumerate(offsets) if s >= end_char), len(ids))
            spans.append((t0, t1))
            cursor = end_char
        sections, prev = [], 0
        for t0, t1 in spans:
            if t0 > prev:
                sections.append(("template", prev, t0))
            sections.append(("message", t0, t1))
            prev = t1
        if prev < len(ids):
            sections.append(("template", prev, len(ids)))
        return ids, sections

    def align_chat_messages(
        self,
        messages: list[dict[str, str]],
        add_generation_prompt: bool = True,
        enable_thinking: bool = False,
        remove_last_surfix: bool = False,
    ) -> AlignedChat:
        """Both chat templates rendered, split into template/message sections, padded and aligned (§4)."""
        slm_text = self._render(self.slm, messages, add_generation_prompt, enable_thinking, remove_last_surfix)
        llm_text = self._render(self.llm, messages, add_generation_prompt, enable_thinking, remove_last_surfix)
        slm_ids, slm_secs = self._sections(self.slm, slm_text, messages)
        llm_ids, llm_secs = self._sections(self.llm, llm_text, messages)
        if [s[0] for s in slm_secs] != [s[0] for s in llm_secs]:
            raise ValueError(
                f"chat templates split differently: receiver {[s[0] for s in slm_secs]} vs sharer "
                f"{[s[0] for s in llm_secs]}; these tokenizers cannot be aligned on this chat"
            )
        out = AlignedChat([], [], [], [], [], [], slm_text, llm_text)
        for (kind, a, b), (_, c, d) in zip(slm_secs, llm_secs, strict=True):
            start = len(out.receiver_ids)
            if kind == "message":
                r, s = slm_ids[a:b], self.align_tokens(slm_ids[a:b])
                r_pad = s_pad = [False] * len(r)
            else:
                n = max(b - a, d - c)
                r = slm_ids[a:b] + [self.slm.pad_token_id] * (n - (b - a))
                s = llm_ids[c:d] + [self.llm.pad_token_id] * (n - (d - c))
                r_pad = [False] * (b - a) + [True] * (n - (b - a))
                s_pad = [False] * (d - c) + [True] * (n - (d - c))
            out.receiver_ids += r
            out.sharer_ids += s
            out.receiver_padding_mask += r_pad
            out.sharer_padding_mask += s_pad
            out.message_mask += [kind == "message"] * len(r)
            end = len(out.receiver_ids)
            out.sections.append({"type": kind, "slm_range": (start, end), "llm_range": (start, end)})
        return out
