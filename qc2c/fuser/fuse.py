"""The fused forward: sections, sharer in step, fusion after the fact (docs/c2c.md §1.2).

For each section [a, b) (boundaries common to the batch):
  1. the receiver runs the section on its own cache (hidden states come from its own, unfused KV);
  2. if it is the last section, its logits are returned (nothing else runs);
  3. otherwise the sharer runs the section too (always, so its cache stays in step);
  4. where the section has positions to fuse, every mapped receiver layer t gets
     cache_r[t][:, :, a:b] = projector_t(sharer KV of layer map[t], receiver KV)[at fused positions],
     replacing the cache tensors (rounded once into the cache dtype), so later sections and decoding see it.

Which positions are fused is a per-row mask (B, L): the reference `kv_cache_index` (a flag per section, same
for the whole batch) converts to it, and batched left-padded evaluation sets it to each row's own prompt
tokens. A `MessagePath` (qc2c.fuser.seam) may stand between the sharer and the fusion: it gets the
section's KV and returns what the receiver reconstructs plus the positions that were sent (`kept`); only
those are fused (sparse fuse) and the receiver keeps its own KV elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from transformers import DynamicCache

from qc2c.fuser.checkpoint import Fuser
from qc2c.fuser.seam import KV, MessagePath, SectionKV


@dataclass
class FusePlan:
    """Section ends (exclusive, increasing, last == L) and the (B, L) bool mask of positions to fuse."""

    ends: list[int]
    fuse_mask: Tensor

    @property
    def starts(self) -> list[int]:
        return [0, *self.ends[:-1]]

    @classmethod
    def from_kv_cache_index(cls, kv_cache_index: Sequence[Tensor], batch: int, device: Any = None) -> FusePlan:
        """Reference format: a list of (B, n_i, 2) sections; only [0, 0, 0] of each is read (§1.1)."""
        ends, flags, pos = [], [], 0
        for section in kv_cache_index:
            pos += int(section.shape[1])
            ends.append(pos)
            flag = int(section[0, 0, 0])
            if flag > 1:
                raise ValueError(f"kv_cache_index flag {flag}: only one sharer (flag 1) is supported")
            flags.append(flag == 1)
        mask = torch.zeros(batch, pos, dtype=torch.bool, device=device)
        for a, b, fused in zip([0, *ends[:-1]], ends, flags, strict=True):
            mask[:, a:b] = fused
        return cls(ends, mask)

    @classmethod
    def from_runs(cls, fuse_mask: Tensor, last_len: int) -> FusePlan:
        """Common section ends for per-row masks: wherever some row's fused run ends, then the last section.

        A token must see the fused KV of every fused run before it in its row, so each run end is a section
        end; a run start need not be (unfused tokens before it are not changed by fusing later ones). Rows
        whose runs end at the same columns (one fused run, then the last section) therefore get exactly
        their batch-of-one result; the last `last_len` tokens are never fused.
        """
        length = fuse_mask.shape[1]
        if not 0 < last_len <= length:
            raise ValueError(f"last section length {last_len} not in 1..{length}")
        if fuse_mask[:, length - last_len :].any():
            raise ValueError("the last section cannot be fused (its logits are computed from the unfused cache)")
        body = fuse_mask[:, : length - last_len]
        run_ends = (body[:, :-1] & ~body[:, 1:]).any(0).nonzero().flatten().add(1).tolist()
        ends = sorted({*run_ends, length - last_len, length} - {0})
        return cls(ends, fuse_mask)


@dataclass
class FusedOutput:
    logits: Tensor  # (B, n_last, V): logits of the last section
    cache: DynamicCache  # the fused receiver cache
    sharer_cache: DynamicCache | None
    records: list[dict[str, Any]] = field(default_factory=list)  # per row, summed over fused sections


@contextmanager
def attention_implementation(model: nn.Module, name: str) -> Iterator[None]:
    """Temporarily switch a HF model's attention kernel (eager is needed to return attention probabilities)."""
    old = model.config._attn_implementation
    if old == name:
        yield
        return
    model.set_attn_implementation(name)
    try:
        yield
    finally:
        model.set_attn_implementation(old)


def merge_records(rows: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sum per-row records over sections (numbers add, nested dicts add key-wise, other values: last wins)."""

    def add(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        out = dict(a)
        for k, v in b.items():
            if k in out and isinstance(v, dict) and isinstance(out[k], dict):
                out[k] = add(out[k], v)
            elif k in out and isinstance(v, int | float) and not isinstance(v, bool):
                out[k] = out[k] + v
            else:
                out[k] = v
        return out

    return [add(a, b) for a, b in zip(rows, new, strict=True)] if rows else [dict(r) for r in new]


def projector_fn(fuser: Fuser):
    def project(t: int, sharer_kv: KV, receiver_kv: KV) -> KV:
        return fuser.projectors[fuser.projector_index[t]](sharer_kv, receiver_kv)

    return project


def fuse_section(
    cache: DynamicCache,
    fuser: Fuser,
    section: SectionKV,
    message_path: MessagePath | None,
) -> list[dict[str, Any]]:
    """Overwrite cache[t][:, :, a:b] at the fused positions of every mapped layer t; returns per-row records."""
    a = section.section_start
    sharer, projected, kept = section.sharer, None, section.fuse_mask
    records: list[dict[str, Any]] = []
    if message_path is not None:
        sent = message_path.transmit(section)
        sharer, projected, records = sent.sharer, sent.projected, sent.records
        kept = sent.kept.to(section.fuse_mask.device) & section.fuse_mask  # never fuse outside the row's prompt
    dense = bool(kept.all())
    for t, s in section.layer_map.items():
        if projected is not None and t in projected:
            k_new, v_new = projected[t]
        else:
            k_new, v_new = section.project(t, sharer[s], section.receiver[t])
        layer = cache.layers[t]
        layer.keys = _replace(layer.keys, k_new, a, kept, dense)
        layer.values = _replace(layer.values, v_new, a, kept, dense)
    return records


def _replace(store: Tensor, new: Tensor, a: int, kept: Tensor, dense: bool) -> Tensor:
    """store with [:, :, a:a+n] replaced at the kept positions. A new tensor, not an in-place write: the old
    one may be saved for backward by the receiver's attention (training through the fused cache)."""
    n = new.shape[2]
    own = store[:, :, a : a + n]
    new = new.to(store.dtype)  # the one rounding into the cache dtype
    section = new if dense else torch.where(kept[:, None, :, None], new, own)
    return torch.cat([store[:, :, :a], section, store[:, :, a + n :]], dim=2)


def fused_forward(
    receiver: nn.Module,
    sharer: nn.Module,
    fuser: Fuser,
    plan: FusePlan,
    input_ids: Tensor,
    *,
    attention_mask: Tensor | None = None,
    position_ids: Tensor | None = None,
    sharer_input_ids: Tensor | None = None,
    sharer_attention_mask: Tensor | None = None,
    sharer_position_ids: Tensor | None = None,
    message_path: MessagePath | None = None,
) -> FusedOutput:
    """Run the sections of `plan` (see module docstring). input_ids (B, L); masks (B, L) 0/1; positions (B, L).

    The sharer reads `sharer_*` where given (aligned ids; or another prompt of its own length, right-aligned
    with the receiver's, whose positions then differ from the receiver's), else the receiver's inputs.
    """
    sharer_ids = input_ids if sharer_input_ids is None else sharer_input_ids
    sharer_mask = attention_mask if sharer_attention_mask is None else sharer_attention_mask
    sharer_pos = position_ids if sharer_position_ids is None else sharer_position_ids
    cache = DynamicCache(config=receiver.config)
    needs_sharer = bool(plan.fuse_mask[:, : plan.starts[-1]].any())
    sharer_cache = DynamicCache(config=sharer.config) if needs_sharer else None
    want_attn = bool(message_path is not None and getattr(message_path, "needs_sharer_attention", False))
    records: list[dict[str, Any]] = []
    for i, (a, b) in enumerate(zip(plan.starts, plan.ends, strict=True)):
        last = i == len(plan.ends) - 1
        out = receiver(
            input_ids=input_ids[:, a:b],
            attention_mask=None if attention_mask is None else attention_mask[:, :b],
            position_ids=None if position_ids is None else position_ids[:, a:b],
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=0 if last else 1,  # 0 = all; earlier sections need no (B, n, vocab) logits
        )
        if last:
            return FusedOutput(out.logits, cache, sharer_cache, records)
        if not needs_sharer:
            continue
        with torch.no_grad(), attention_implementation(sharer, "eager") if want_attn else _nothing():
            s_out = sharer(
                input_ids=sharer_ids[:, a:b],
                attention_mask=None if sharer_mask is None else sharer_mask[:, :b],
                position_ids=None if sharer_pos is None else sharer_pos[:, a:b],
                past_key_values=sharer_cache,
                use_cache=True,
                output_attentions=want_attn,
                logits_to_keep=1,
            )
        fuse_mask = plan.fuse_mask[:, a:b]
        if not fuse_mask.any():
            continue
        section = SectionKV(
            sharer=[(lay.keys[:, :, a:b], lay.values[:, :, a:b]) for lay in sharer_cache.layers],
            receiver=[(lay.keys[:, :, a:b], lay.values[:, :, a:b]) for lay in cache.layers],
            fuse_mask=fuse_mask,
            layer_map=dict(fuser.layer_map),
            project=projector_fn(fuser),
            sharer_attention=list(s_out.attentions) if want_attn else None,
            section_start=a,
        )
        records = merge_records(records, fuse_section(cache, fuser, section, message_path))
    raise AssertionError("unreachable: the plan has a last section")


@contextmanager
def _nothing() -> Iterator[None]:
    yield
