"""A batch's settings scored from ONE receiver prefill and ONE sharer prefill (`score_settings`).

In C2C the receiver's own cache and the sharer's cache of a prompt do not depend on the codec: only
selection → encode → decode → project/fuse → the short last section differ. So per batch of items:

1. the batch is rendered and padded once (every shared setting renders the same ids: checked per batch);
2. the receiver and the sharer each run the fused section [0, fused_end) once, as `fused_forward` runs it;
3. each C2C setting (`c2c_fp16`, `compressed`, every grid point of a sweep group) fuses the sharer's section
   into its own VIEW of the receiver cache (`cache_view`: new layer objects over the same tensors; fusion
   and cache appends replace tensors, never write into them, so no setting sees another's) with
   `qc2c.fuser.fuse.fuse_section` — the step `fused_forward` runs — then runs the receiver's last section
   [fused_end, L) on it, and is scored like its own prefill (`SettingScorer.score_prefill`; `generate`
   decodes per setting from its view);
4. the `receiver` and `sharer` baselines run their own last section on an unfused view of their model's
   prefix cache: the model alone, in two forwards instead of one.

Numbers: the C2C settings run the same operations on the same tensors as `fused_forward`, so their rows equal
the per-setting path bit for bit. The baselines' two-section forward is the same computation as one forward
over the whole prompt, but not bit for bit (float32 CPU, SDPA: the attention kernel's blocking depends on
the query length): option probabilities move by < 1e-6 and no prediction changed on the tiny or demo pair
(`tests/qc2c/eval/test_shared.py` bounds it at 1e-5). A baseline whose own prompt differs from the pair's
(a sharer with another chat template) keeps its one forward.

Timing: each setting's stage seconds are what it costs on its own: the shared prefills' time is attributed in
full to every setting that reads it (`sharer_prefill_s` = the sharer's section, `receiver_s` = the
receiver's section plus the setting's own last section, `fuse_s` = its own fusion minus its codec), so the
per-setting times of one batch add up to more than its wall time. Settings that do not share — aligned
pairs, `c2c_placebo` (its sharer reads other items' prompts, of other lengths), text settings, a message
path that needs the sharer's attention probabilities (eager attention) — and any batch that raises run the
per-setting path (`SettingScorer.score_rows`), which pins errors on their samples.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from qc2c.eval.batching import PromptBatch
from qc2c.eval.prefill import C2CPrefill, PlainPrefill, Prefill, c2c_timing
from qc2c.eval.score import RowScore, SettingScorer


def score_settings(
    scorers: dict[str, SettingScorer], items: Sequence[Any], *, shared: bool = True
) -> dict[str, list[RowScore]]:
    """Rows per setting (in `scorers` order) for one batch; `shared=False` is the per-setting path."""
    group = shareable(scorers) if shared else []
    rows: dict[str, list[RowScore]] = {}
    if len(group) > 1:
        try:
            rows = score_shared({name: scorers[name] for name in group}, items)
        except Exception:  # noqa: BLE001 - a bad item or a failing batch: the per-setting path pins the error
            rows = {}
    return {name: rows[name] if name in rows else scorer.score_rows(items) for name, scorer in scorers.items()}


ALONE_TOLERANCE = 1e-5  # the models alone, whole prompt vs two sections: option probabilities (module docstring)


def same_rows(
    old: list[dict[str, Any]], new: list[dict[str, Any]], alone: Sequence[str] = ("receiver", "sharer")
) -> bool:
    """Whether two paths' per-sample rows ({setting: row JSON}, timings stripped) agree: identical, but for the
    models alone (`alone`), whose option probabilities may differ by less than ALONE_TOLERANCE."""
    if len(old) != len(new):
        return False
    for a, b in zip(old, new):
        if a.keys() != b.keys():
            return False
        for name in a:
            ra, rb = dict(a[name]), dict(b[name])
            if name in alone:
                pa, pb = ra.pop("option_probs", None) or {}, rb.pop("option_probs", None) or {}
                if pa.keys() != pb.keys() or any(abs(pa[k] - pb[k]) >= ALONE_TOLERANCE for k in pa):
                    return False
            if ra != rb:
                return False
    return True


def shareable(scorers: dict[str, SettingScorer]) -> list[str]:
    """Settings that can be scored from one receiver + one sharer prefill (see the module docstring): the C2C
    settings of one pair, and the `receiver` / `sharer` baselines of the same models."""
    c2c = [s.prefill for s in scorers.values() if type(s) is SettingScorer and isinstance(s.prefill, C2CPrefill)]
    if not c2c:
        return []
    receiver, sharer = c2c[0].receiver, c2c[0].sharer
    protocol = next(iter(scorers.values())).protocol
    names = []
    for name, s in scorers.items():
        p = s.prefill
        if type(s) is not SettingScorer or s.protocol != protocol:
            continue
        if isinstance(p, C2CPrefill) and p.receiver is receiver and p.sharer is sharer:
            if not getattr(p.message_path, "needs_sharer_attention", False):
                names.append(name)
        elif isinstance(p, PlainPrefill) and (p.model is receiver or p.model is sharer):
            names.append(name)
    return names


def cache_view(cache: Any) -> Any:
    """A cache object of its own over the same tensors: updates and fusion replace a layer's tensors, so the
    view can be extended or fused without the original (or another view) seeing it."""
    view = copy.copy(cache)
    view.layers = [copy.copy(layer) for layer in cache.layers]
    return view


def _clock(device: torch.device) -> float:
    """perf_counter after the device's queued work (CUDA kernels run asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _forward(model: Any, batch: PromptBatch, a: int, b: int, cache: Any, keep: int) -> tuple[Tensor, float]:
    t0 = _clock(batch.input_ids.device)
    out = model(
        input_ids=batch.input_ids[:, a:b],
        attention_mask=batch.attention_mask[:, :b],
        position_ids=batch.position_ids[:, a:b],
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=keep,
    )
    return out.logits, _clock(batch.input_ids.device) - t0


@dataclass
class SectionPrefill:
    """What every shared setting of a batch reads: the padded batch and each model's cache of [0, fused_end)."""

    batch: PromptBatch
    fuse_mask: Tensor  # (B, fused_end): the fused tokens of the section
    receiver: Any
    sharer: Any
    caches: dict[int, Any]  # id(model) -> its cache of the section
    seconds: dict[int, float]  # id(model) -> its section forward's seconds


def prepare_all(group: dict[str, SettingScorer], items: Sequence[Any]) -> dict[str, list[Any]]:
    """Each setting's rendered prompts (by its key in `group`); plain `SettingScorer`s of one tokenizer and
    protocol render the same, so once."""
    done: dict[tuple[int, str], list[Any]] = {}
    out = {}
    for name, s in group.items():
        key = (id(s.tokenizer), s.protocol)
        if key not in done:
            done[key] = [s.prepare(item) for item in items]
        out[name] = done[key]
    return out


@torch.no_grad()
def section_prefill(ref: SettingScorer, prompts: list[Any]) -> SectionPrefill:
    """The batch of the pair's C2C scorer `ref`, and the receiver's and the sharer's fused-section forwards."""
    from transformers import DynamicCache

    from qc2c.fuser.fuse import FusePlan

    batch = ref.make_batch(prompts).to(ref.device)
    a, length = batch.fused_end, batch.input_ids.shape[1]
    plan = FusePlan.from_runs(batch.fuse_mask, length - a)
    if plan.ends != [a, length]:
        raise ValueError(f"sections {plan.ends}: the shared path needs one fused section then the last")
    receiver, sharer = ref.prefill.receiver, ref.prefill.sharer
    caches, seconds = {}, {}
    for model in (receiver, sharer):
        caches[id(model)] = DynamicCache(config=model.config)
        _, seconds[id(model)] = _forward(model, batch, 0, a, caches[id(model)], 1)
    return SectionPrefill(batch, plan.fuse_mask[:, :a], receiver, sharer, caches, seconds)


@torch.no_grad()
def score_on_section(
    s: SettingScorer, items: Sequence[Any], prepared: list[Any], shared: SectionPrefill
) -> list[RowScore]:
    """One setting's own work on the shared prefill: its view of the cache, its fusion (C2C settings), its last
    section and its scoring."""
    from qc2c.fuser.fuse import fuse_section, merge_records, projector_fn
    from qc2c.fuser.seam import SectionKV

    p, batch = s.prefill, shared.batch
    a, length, size = batch.fused_end, batch.input_ids.shape[1], batch.size
    if isinstance(p, PlainPrefill):  # a model alone: its own prefix, then its own last section
        cache = cache_view(shared.caches[id(p.model)])
        logits, last_s = _forward(p.model, batch, a, length, cache, 1)
        timing = {p.stage: (shared.seconds[id(p.model)] + last_s) / size}
        return s.score_prefill(
            items, prepared, batch, Prefill(logits[:, -1].float(), cache, [{} for _ in range(size)], timing)
        )
    r_cache, s_cache = shared.caches[id(shared.receiver)], shared.caches[id(shared.sharer)]
    cache, records = cache_view(r_cache), []
    t0 = _clock(batch.input_ids.device)
    if bool(shared.fuse_mask.any()):
        section = SectionKV(
            sharer=[(lay.keys[:, :, :a], lay.values[:, :, :a]) for lay in s_cache.layers],
            receiver=[(lay.keys[:, :, :a], lay.values[:, :, :a]) for lay in r_cache.layers],
            fuse_mask=shared.fuse_mask,
            layer_map=dict(p.fuser.layer_map),
            project=projector_fn(p.fuser),
            section_start=0,
        )
        records = merge_records(records, fuse_section(cache, p.fuser, section, p.message_path))
    fuse_s = _clock(batch.input_ids.device) - t0
    logits, last_s = _forward(shared.receiver, batch, a, length, cache, 0)
    records = records or [{} for _ in range(size)]
    r_s, s_s = shared.seconds[id(shared.receiver)] + last_s, shared.seconds[id(shared.sharer)]
    timing = c2c_timing(size, s_s, r_s, s_s + r_s + fuse_s, records)
    return s.score_prefill(items, prepared, batch, Prefill(logits[:, -1].float(), cache, records, timing))


@torch.no_grad()
def score_shared(group: dict[str, SettingScorer], items: Sequence[Any]) -> dict[str, list[RowScore]]:
    """Score `items` under every setting of `group` ({key: scorer}, all `shareable`; the keys name the rows, so
    a sweep group's grid points, all scorers of a setting named `compressed`, stay apart) from one prefill per
    model; raises on any failure (the caller then takes the per-setting path). One setting's fused view at a
    time is alive: each is dropped once its rows are scored, so the working set does not grow with the
    number of settings."""
    prepared = prepare_all(group, items)
    ref = next(name for name, s in group.items() if isinstance(s.prefill, C2CPrefill))
    ids = [p.ids for p, _ in prepared[ref]]
    pad_id = group[ref].pad_id
    # a baseline whose own prompt differs from the pair's (the sharer's chat template) keeps its own forward
    keep = [name for name, s in group.items() if [p.ids for p, _ in prepared[name]] == ids and s.pad_id == pad_id]
    shared = section_prefill(group[ref], [p for p, _ in prepared[ref]])
    return {name: score_on_section(group[name], items, prepared[name], shared) for name in keep}
