"""C2CModel: receiver + sharer + fuser behind the reference `forward` / `generate` (docs/c2c.md).

    model = C2CModel.from_pretrained("tiny:qwen3", "tiny:qwen2", "tiny:qwen3+qwen2")
    out = model.forward(ids, kv_cache_index=[...])          # logits of the last section + fused cache
    seq = model.generate(ids, max_new_tokens=8)             # fuses every prompt token but the last

This is the library entry point (a pair and a fuser by name, upstream's call signatures). Evaluation does
not go through it: `qc2c.eval` builds left-padded batches (`qc2c.eval.batching`) and calls the same
`qc2c.fuser.fuse.fused_forward` and `qc2c.models.decode.greedy_decode` directly (`qc2c.eval.prefill`).
The fuser is checked against the pair (preflight) before any weights are loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor
from transformers import AutoConfig, AutoTokenizer, DynamicCache

from qc2c.fuser.checkpoint import Fuser
from qc2c.fuser.fuse import FusedOutput, FusePlan, fused_forward
from qc2c.fuser.preflight import ensure_compatible
from qc2c.fuser.seam import MessagePath
from qc2c.fuser.sources import load_fuser
from qc2c.models.align import TokenAligner
from qc2c.models.decode import greedy_decode
from qc2c.models.pair import Pair, load_pair, resolve_model_dir


@dataclass
class C2COutput:
    logits: Tensor  # (B, n_last, V) logits of the last section
    cache: DynamicCache  # fused receiver cache (B, H, L, D) per layer
    records: list[dict[str, Any]] = field(default_factory=list)  # per row, from the message path


def _as_mask(mask: Tensor | None) -> Tensor | None:
    return None if mask is None else (mask > 0).long()


class C2CModel:
    """Receiver + sharer + fuser; see the module docstring."""

    def __init__(self, pair: Pair, fuser: Fuser, alignment: str | None = None) -> None:
        self.pair, self.fuser = pair, fuser
        self.alignment = None if alignment in (None, "none") else alignment
        self.aligner = (
            TokenAligner(pair.receiver_tokenizer, pair.sharer_tokenizer, self.alignment) if self.alignment else None
        )

    @classmethod
    def from_pretrained(
        cls,
        receiver: str,
        sharer: str,
        fuser_dir: str | Any,
        *,
        alignment: str | None = None,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        receiver_revision: str = "main",
        sharer_revision: str = "main",
        fuser_sha256: str | None = None,
        attn_implementation: str | None = None,
    ) -> C2CModel:
        """Load the fuser, check it against the pair's configs and tokenizers, then load the models."""
        fuser = load_fuser(fuser_dir, sha256=fuser_sha256)
        r_dir, s_dir = resolve_model_dir(receiver, receiver_revision), resolve_model_dir(sharer, sharer_revision)
        toks = (AutoTokenizer.from_pretrained(r_dir), AutoTokenizer.from_pretrained(s_dir))
        ensure_compatible(
            fuser,
            AutoConfig.from_pretrained(r_dir),
            AutoConfig.from_pretrained(s_dir),
            toks,
            alignment=alignment,
            names=(receiver, sharer),
        )
        pair = load_pair(
            receiver,
            sharer,
            receiver_revision=receiver_revision,
            sharer_revision=sharer_revision,
            dtype=dtype,
            device=device,
            attn_implementation=attn_implementation,
        )
        fuser.to(device=device, dtype=dtype)  # as upstream: projectors take the receiver's dtype
        return cls(pair, fuser, alignment)

    @property
    def device(self) -> torch.device:
        return self.pair.receiver.device

    def _run(self, plan: FusePlan, input_ids: Tensor, **kw: Any) -> FusedOutput:
        with torch.no_grad():
            return fused_forward(
                self.pair.receiver,
                self.pair.sharer,
                self.fuser,
                plan,
                input_ids.to(self.device),
                **{k: (v.to(self.device) if isinstance(v, Tensor) else v) for k, v in kw.items()},
            )

    def forward(
        self,
        input_ids: Tensor | Sequence[Tensor],
        attention_mask: Tensor | Sequence[Tensor] | None = None,
        position_ids: Tensor | None = None,
        kv_cache_index: Sequence[Tensor] | None = None,
        sharer_input_ids: Tensor | None = None,
        sharer_attention_mask: Tensor | None = None,
        *,
        message_path: MessagePath | None = None,
    ) -> C2COutput:
        """Reference forward. input_ids / attention_mask may be [receiver, sharer] lists (aligned inputs)."""
        if isinstance(input_ids, list | tuple):
            input_ids, sharer_input_ids = input_ids[0], input_ids[1]
        if isinstance(attention_mask, list | tuple):
            attention_mask, sharer_attention_mask = attention_mask[0], attention_mask[1]
        b, length = input_ids.shape
        if kv_cache_index is None:
            plan = FusePlan([length], torch.zeros(b, length, dtype=torch.bool, device=self.device))
        else:
            plan = FusePlan.from_kv_cache_index(kv_cache_index, b, self.device)
            if plan.ends[-1] != length:
                raise ValueError(f"kv_cache_index sections add up to {plan.ends[-1]}, input has {length} tokens")
        out = self._run(
            plan,
            input_ids,
            attention_mask=_as_mask(attention_mask),
            position_ids=position_ids,
            sharer_input_ids=sharer_input_ids,
            sharer_attention_mask=_as_mask(sharer_attention_mask),
            message_path=message_path,
        )
        return C2COutput(out.logits, out.cache, out.records)

    __call__ = forward

    def generate(
        self,
        input_ids: Tensor | Sequence[Tensor],
        attention_mask: Tensor | Sequence[Tensor] | None = None,
        position_ids: Tensor | None = None,
        kv_cache_index: Sequence[Tensor] | None = None,
        max_new_tokens: int = 64,
        eos_token_id: int | Sequence[int] | None = None,
        *,
        sharer_input_ids: Tensor | None = None,
        sharer_attention_mask: Tensor | None = None,
        message_path: MessagePath | None = None,
        decode_mask: Literal["reference", "padded"] = "reference",
    ) -> Tensor:
        """Greedy generation (`qc2c.models.decode.greedy_decode` on the receiver from the fused cache); returns
        (B, L + n_new), rows that stopped early filled with the first EOS id. kv_cache_index None: fuse every
        prompt token but the last.

        decode_mask "reference" reproduces upstream's decode steps, which see only column 0 of the padding mask
        (pads inside aligned prompts become visible, docs/c2c.md §1.2); "padded" keeps the prompt's padding mask.
        """
        ids = input_ids[0] if isinstance(input_ids, list | tuple) else input_ids
        if kv_cache_index is None:
            n = ids.shape[1]
            kv_cache_index = (
                [torch.tensor([[[1, 0]] * (n - 1)]), torch.tensor([[[-1, 0]]])]
                if n > 1
                else [torch.tensor([[[-1, 0]]])]
            )
        out = self.forward(
            input_ids,
            attention_mask,
            position_ids,
            kv_cache_index,
            sharer_input_ids,
            sharer_attention_mask,
            message_path=message_path,
        )
        mask = attention_mask[0] if isinstance(attention_mask, list | tuple) else attention_mask
        mask = torch.ones_like(ids) if mask is None else _as_mask(mask)
        pos = position_ids if position_ids is not None else torch.arange(ids.shape[1]).expand_as(ids)
        eos = [] if eos_token_id is None else ([eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id))
        fill = eos[0] if eos else 0
        rows = greedy_decode(
            self.pair.receiver,
            out.cache,
            out.logits[:, -1],
            mask.to(self.device),
            pos.to(self.device),
            max_new_tokens=max_new_tokens,
            eos_ids=eos,
            pad_id=fill,
            reference_mask=decode_mask == "reference",
        )
        width = max(map(len, rows), default=0)
        new = torch.tensor([row + [fill] * (width - len(row)) for row in rows], dtype=torch.long, device=self.device)
        return torch.cat([ids.to(self.device), new.view(len(rows), width)], dim=1)

    def chat_inputs(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        """Batch-of-one generate-style inputs for a chat: aligned (docs/c2c.md §4) or the receiver's template for both."""
        if self.aligner is not None:
            return self.aligner.align_chat_messages(messages).model_inputs()
        tok = self.pair.receiver_tokenizer
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)
        ids = torch.tensor([tok.encode(text, add_special_tokens=False)])
        n = ids.shape[1]
        index = [torch.tensor([[[1, 0]] * (n - 1)]), torch.tensor([[[-1, 0]]])]
        return {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "position_ids": torch.arange(n)[None],
            "kv_cache_index": index,
        }
