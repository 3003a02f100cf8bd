"""C2CModel: receiver + sharer + fuser behind the reference `forward` / `generate` (docs/c2c.md).

    model = C2CModel.from_pretrained("tiny:qwen3", "tiny:qwen2", "tiny:qwen3+qwen2")
    out = model.forward(ids, kv_cache_index=[...])          # logits of the last section + fused cache
    seq = model.generate(ids, max_new_tokens=8)             # fuses every prompt token but the last

`fused_prefill(batch)` is the batched form evaluation uses: left-padded rows, a per-row fuse mask, the
last section common to the batch, and an optional message path (selection -> codec) per fused section.
The fuser is checked against the pair (preflight) before any weights are loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor
from transformers import AutoConfig, AutoTokenizer, DynamicCache

from qc2c.fuser.checkpoint import Fuser, load_fuser
from qc2c.fuser.fuse import FusedOutput, FusePlan, fused_forward
from qc2c.fuser.preflight import ensure_compatible
from qc2c.fuser.seam import MessagePath
from qc2c.models.align import TokenAligner
from qc2c.models.pair import Pair, load_pair, resolve_model_dir


@dataclass
class C2COutput:
    logits: Tensor  # (B, n_last, V) logits of the last section
    cache: DynamicCache  # fused receiver cache (B, H, L, D) per layer
    records: list[dict[str, Any]] = field(default_factory=list)  # per row, from the message path


@dataclass
class FusedBatch:
    """A left-padded batch: rows end at the same column; the last `last_len` columns are the last section.

    fuse_mask (B, L) bool marks each row's own tokens to fuse (never padding); position_ids default to
    each row's own positions (0 at its first real token).
    """

    input_ids: Tensor
    attention_mask: Tensor
    fuse_mask: Tensor
    last_len: int
    position_ids: Tensor | None = None
    sharer_input_ids: Tensor | None = None
    sharer_attention_mask: Tensor | None = None

    @classmethod
    def left_padded(cls, rows: Sequence[dict[str, Any]], pad_id: int, sharer_pad_id: int | None = None) -> FusedBatch:
        """rows: {"input_ids", "fuse_mask", "last_len"[, "sharer_input_ids", "attention_mask",
        "sharer_attention_mask"]} as lists; positions count from each row's first token (pads inside a row,
        as the aligner makes them, shift later positions like the reference)."""
        last = {int(r["last_len"]) for r in rows}
        if len(last) != 1:
            raise ValueError(f"rows disagree on the last section length {sorted(last)}; it must be common")
        width = max(len(r["input_ids"]) for r in rows)
        has_sharer = "sharer_input_ids" in rows[0]

        def pad(values: Sequence[Any], fill: Any) -> list[Any]:
            return [fill] * (width - len(values)) + list(values)

        ids, mask, fuse, pos, s_ids, s_mask = [], [], [], [], [], []
        for r in rows:
            n = len(r["input_ids"])
            ids.append(pad(r["input_ids"], pad_id))
            mask.append(pad(r.get("attention_mask", [1] * n), 0))
            fuse.append(pad(r["fuse_mask"], False))
            pos.append(pad(list(range(n)), 0))
            if has_sharer:
                s_ids.append(pad(r["sharer_input_ids"], pad_id if sharer_pad_id is None else sharer_pad_id))
                s_mask.append(pad(r.get("sharer_attention_mask", [1] * n), 0))
        return cls(
            input_ids=torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            fuse_mask=torch.tensor(fuse, dtype=torch.bool) & torch.tensor(mask).bool(),
            last_len=last.pop(),
            position_ids=torch.tensor(pos),
            sharer_input_ids=torch.tensor(s_ids) if has_sharer else None,
            sharer_attention_mask=torch.tensor(s_mask) if has_sharer else None,
        )


@dataclass
class FusedPrefill:
    logits_last_section: Tensor  # (B, last_len, V)
    cache: DynamicCache
    records: list[dict[str, Any]]
    attention_mask: Tensor  # (B, L) to continue decoding
    position_ids: Tensor  # (B, L)


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
            fuser, AutoConfig.from_pretrained(r_dir), AutoConfig.from_pretrained(s_dir), toks,
            alignment=alignment, names=(receiver, sharer),
        )  # fmt: skip
        pair = load_pair(
            receiver, sharer, receiver_revision=receiver_revision, sharer_revision=sharer_revision,
            dtype=dtype, device=device, attn_implementation=attn_implementation,
        )  # fmt: skip
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
            plan, input_ids, attention_mask=_as_mask(attention_mask), position_ids=position_ids,
            sharer_input_ids=sharer_input_ids, sharer_attention_mask=_as_mask(sharer_attention_mask),
            message_path=message_path,
        )  # fmt: skip
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
        """Greedy generation; returns (B, L + n_new). kv_cache_index None: fuse every prompt token but the last.

        decode_mask "reference" reproduces upstream's decode steps, which see only column 0 of the padding mask
        (pads inside aligned prompts become visible, §1.2); "padded" keeps the prompt's padding mask.
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
        prefill = FusedPrefill(out.logits, out.cache, out.records, mask.to(self.device), pos.to(self.device))
        new = self.decode(prefill, max_new_tokens, eos_token_id, reference_mask=decode_mask == "reference")
        return torch.cat([ids.to(self.device), new], dim=1)

    def fused_prefill(self, batch: FusedBatch, message_path: MessagePath | None = None) -> FusedPrefill:
        """Batched prefill with per-row fuse masks (see FusedBatch); returns last-section logits + fused cache."""
        pos = batch.position_ids
        if pos is None:
            pos = (batch.attention_mask.long().cumsum(1) - 1).clamp(min=0)
        plan = FusePlan.from_runs(batch.fuse_mask.to(self.device).bool(), batch.last_len)
        out = self._run(
            plan, batch.input_ids, attention_mask=batch.attention_mask, position_ids=pos,
            sharer_input_ids=batch.sharer_input_ids, sharer_attention_mask=batch.sharer_attention_mask,
            message_path=message_path,
        )  # fmt: skip
        return FusedPrefill(
            out.logits, out.cache, out.records, batch.attention_mask.to(self.device), pos.to(self.device)
        )

    def decode(
        self,
        prefill: FusedPrefill,
        max_new_tokens: int,
        eos_token_id: int | Sequence[int] | None = None,
        *,
        reference_mask: bool = False,
    ) -> Tensor:
        """Greedy decode from a fused prefill (plain receiver steps); finished rows are filled with eos. (B, n)."""
        eos = [] if eos_token_id is None else ([eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id))
        fill = eos[0] if eos else 0
        mask, pos = prefill.attention_mask, prefill.position_ids[:, -1:]
        if reference_mask:
            mask = torch.cat([mask[:, :1], torch.ones_like(mask[:, 1:])], dim=1)
        token = prefill.logits_last_section[:, -1].argmax(-1, keepdim=True)
        done = torch.zeros_like(token, dtype=torch.bool)
        out = []
        with torch.no_grad():
            for step in range(max_new_tokens):
                token = torch.where(done, torch.full_like(token, fill), token)
                out.append(token)
                done |= torch.isin(token, torch.tensor(eos, device=token.device)) if eos else done
                if bool(done.all()) or step == max_new_tokens - 1:
                    break
                mask = torch.cat([mask, torch.ones_like(token)], dim=1)
                pos = pos + 1
                step_out = self.pair.receiver(
                    input_ids=token,
                    attention_mask=mask,
                    position_ids=pos,
                    past_key_values=prefill.cache,
                    use_cache=True,
                )
                token = step_out.logits[:, -1].argmax(-1, keepdim=True)
        return torch.cat(out, dim=1) if out else torch.zeros(token.shape[0], 0, dtype=torch.long, device=self.device)

    def chat_inputs(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        """Batch-of-one generate-style inputs for a chat: aligned (§4) or the receiver's template for both."""
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
