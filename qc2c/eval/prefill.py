"""A setting's batched prefill: one model alone (`plain_prefill`) or a C2C pair (`c2c_prefill`).

Both take a left-padded `PromptBatch` (`qc2c.eval.batching`) and return a `Prefill`: the last position's
logits (scored by the logits protocol, the first greedy token of the generate protocol), the cache that
decoding continues from, per-row message records (C2C settings) and per-sample stage timings.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from qc2c.eval.batching import PromptBatch
from qc2c.eval.clock import StageClock
from qc2c.models.decode import greedy_decode


@dataclass
class Prefill:
    """What a setting's prefill returns: last-position logits (B, V), the cache to decode from, per-row
    message records (C2C settings) and per-row stage timings."""

    logits_last: Tensor
    cache: Any
    records: list[dict[str, Any]]
    timing: dict[str, float]


PrefillFn = Callable[[PromptBatch], Prefill]


def decode_after(
    model: Any, prefill: Prefill, batch: PromptBatch, *, max_new_tokens: int, eos_ids: set[int], pad_id: int
) -> list[list[int]]:
    """Greedy tokens per row of `batch`, `model` continuing from `prefill` (`qc2c.models.decode`)."""
    return greedy_decode(
        model,
        prefill.cache,
        prefill.logits_last,
        batch.attention_mask,
        batch.position_ids,
        max_new_tokens=max_new_tokens,
        eos_ids=eos_ids,
        pad_id=pad_id,
    )


def plain_prefill(model: Any, stage: str = "receiver_s") -> PrefillFn:
    """Prefill of one model alone (receiver or sharer baseline) on a left-padded batch; its seconds per
    sample are recorded under `stage` ("receiver_s", or "sharer_prefill_s" for the sharer alone)."""

    def prefill(batch: PromptBatch) -> Prefill:
        t0 = time.perf_counter()
        out = model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            use_cache=True,
            logits_to_keep=1,  # only the last position is scored or decoded from
        )
        seconds = (time.perf_counter() - t0) / batch.size
        return Prefill(
            out.logits[:, -1].float(), out.past_key_values, [{} for _ in range(batch.size)], {stage: seconds}
        )

    return prefill


def c2c_prefill(receiver: Any, sharer: Any, fuser: Any, message_path: Any | None) -> PrefillFn:
    """Prefill of a C2C pair on a batch (`qc2c.fuser.fuse.fused_forward`).

    The batch's per-row fuse mask selects the fused tokens; the last `L - fused_end` columns (the response
    text for `logits`, the last prompt token for `generate`) form the unfused last section. With
    `message_path` None the sharer KV is fused as is (`c2c_fp16`); else it goes through the codec and the
    per-row records carry bytes, tokens sent and encode/decode seconds. Timing per sample: sharer prefill,
    receiver, and fuse_s = the rest minus the codec's encode + decode (projectors, cache writes, overhead).
    """
    # imported here, not at the top: transformers is slow to import and the runner imports this module to plan
    from qc2c.fuser.fuse import FusePlan, fused_forward

    def prefill(batch: PromptBatch) -> Prefill:
        t0 = time.perf_counter()
        plan = FusePlan.from_runs(batch.fuse_mask, batch.input_ids.shape[1] - batch.fused_end)
        with StageClock({"sharer": sharer, "receiver": receiver}, batch.input_ids.device) as clock:
            out = fused_forward(
                receiver,
                sharer,
                fuser,
                plan,
                batch.input_ids,
                attention_mask=batch.attention_mask,
                position_ids=batch.position_ids,
                sharer_input_ids=batch.sharer_input_ids,
                sharer_attention_mask=batch.sharer_attention_mask,
                sharer_position_ids=batch.sharer_position_ids,
                message_path=message_path,
            )
        total = time.perf_counter() - t0
        records = out.records or [{} for _ in range(batch.size)]
        codec_s = sum(float(r.get("encode_s", 0.0)) + float(r.get("decode_s", 0.0)) for r in records)
        other_s = total - clock.seconds["sharer"] - clock.seconds["receiver"] - codec_s
        timing = {
            "sharer_prefill_s": clock.seconds["sharer"] / batch.size,
            "receiver_s": clock.seconds["receiver"] / batch.size,
            "fuse_s": max(0.0, other_s) / batch.size,
            "c2c_prefill_s": total / batch.size,
        }
        return Prefill(out.logits[:, -1].float(), out.cache, records, timing)

    return prefill
