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


@dataclass
class PlainPrefill:
    """Prefill of one model alone (receiver or sharer baseline) on a left-padded batch; its seconds per
    sample are recorded under `stage` ("receiver_s", or "sharer_prefill_s" for the sharer alone). A callable
    object, not a closure, so that `qc2c.eval.shared` can see which model it runs."""

    model: Any
    stage: str = "receiver_s"

    def __call__(self, batch: PromptBatch) -> Prefill:
        t0 = time.perf_counter()
        out = self.model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            use_cache=True,
            logits_to_keep=1,  # only the last position is scored or decoded from
        )
        seconds = (time.perf_counter() - t0) / batch.size
        return Prefill(
            out.logits[:, -1].float(), out.past_key_values, [{} for _ in range(batch.size)], {self.stage: seconds}
        )


def plain_prefill(model: Any, stage: str = "receiver_s") -> PrefillFn:
    """`PlainPrefill` of `model` (see there)."""
    return PlainPrefill(model, stage)


@dataclass
class C2CPrefill:
    """Prefill of a C2C pair on a batch (`qc2c.fuser.fuse.fused_forward`).

    The batch's per-row fuse mask selects the fused tokens; the last `L - fused_end` columns (the response
    text for `logits`, the last prompt token for `generate`) form the unfused last section. With
    `message_path` None the sharer KV is fused as is (`c2c_fp16`); else it goes through the codec and the
    per-row records carry bytes, tokens sent and encode/decode seconds. Timing per sample: sharer prefill,
    receiver, and fuse_s = the rest minus the codec's encode + decode (projectors, cache writes, overhead).
    """

    receiver: Any
    sharer: Any
    fuser: Any
    message_path: Any | None

    def __call__(self, batch: PromptBatch) -> Prefill:
        # imported here, not at the top: transformers is slow to import and the runner imports this module
        from qc2c.fuser.fuse import FusePlan, fused_forward

        t0 = time.perf_counter()
        plan = FusePlan.from_runs(batch.fuse_mask, batch.input_ids.shape[1] - batch.fused_end)
        with StageClock({"sharer": self.sharer, "receiver": self.receiver}, batch.input_ids.device) as clock:
            out = fused_forward(
                self.receiver,
                self.sharer,
                self.fuser,
                plan,
                batch.input_ids,
                attention_mask=batch.attention_mask,
                position_ids=batch.position_ids,
                sharer_input_ids=batch.sharer_input_ids,
                sharer_attention_mask=batch.sharer_attention_mask,
                sharer_position_ids=batch.sharer_position_ids,
                message_path=self.message_path,
            )
        total = time.perf_counter() - t0
        records = out.records or [{} for _ in range(batch.size)]
        timing = c2c_timing(batch.size, clock.seconds["sharer"], clock.seconds["receiver"], total, records)
        return Prefill(out.logits[:, -1].float(), out.cache, records, timing)


def codec_seconds(records: list[dict[str, Any]]) -> float:
    """The codec's encode + decode seconds summed over a batch's rows."""
    return sum(float(r.get("encode_s", 0.0)) + float(r.get("decode_s", 0.0)) for r in records)


def c2c_timing(
    size: int, sharer_s: float, receiver_s: float, total_s: float, records: list[dict[str, Any]]
) -> dict[str, float]:
    """Per-sample stage seconds of a C2C prefill: fuse_s is the rest of `total_s` minus the codec."""
    other_s = total_s - sharer_s - receiver_s - codec_seconds(records)
    return {
        "sharer_prefill_s": sharer_s / size,
        "receiver_s": receiver_s / size,
        "fuse_s": max(0.0, other_s) / size,
        "c2c_prefill_s": total_s / size,
    }


def c2c_prefill(receiver: Any, sharer: Any, fuser: Any, message_path: Any | None) -> PrefillFn:
    """`C2CPrefill` of the pair (see there)."""
    return C2CPrefill(receiver, sharer, fuser, message_path)
