"""Batched scoring of multiple-choice items under C2C's two protocols, for one setting at a time.

Settings (names as in the manifest and results; `qc2c.eval.settings` builds a scorer per setting):
`receiver` / `sharer` (one model alone, its own chat template) and the C2C settings `c2c_fp16`
(uncompressed fusion) and `compressed` (the manifest's kv codec as the message path).

Protocols (docs/c2c.md §5):

* `logits`: one forward over chat(prompt) + "The correct answer is"; softmax over the option letters' first
  tokens (`encode(" X")[0]`) at the last position; pred = argmax. C2C fuses the instruction tokens only.
* `generate`: greedy decoding for max_new_tokens (stop at EOS), text decoded with special tokens skipped,
  letter by `qc2c.eval.extract`. C2C fuses every prompt token but the last.

Batches are left-padded (`qc2c.eval.batching`) so each row's positions, masks and fused tokens equal its
batch-size-1 values; predictions are identical to scoring one sample at a time (tested). A row that cannot
be rendered (bad item) gets an error and is left out of the batch; if a batch raises, the caller re-scores
its rows one by one so that the exception lands on the sample that caused it (`score_rows`).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from qc2c.eval.batching import PromptBatch, left_pad
from qc2c.eval.extract import extract_answer
from qc2c.eval.prompts import RenderedPrompt, option_token_ids, render

PROTOCOLS = ("logits", "generate")


@dataclass
class RowScore:
    """One sample under one setting; what progress/<dataset>.jsonl stores per setting."""

    pred: str | None = None
    option_probs: dict[str, float] | None = None
    text: str | None = None
    extraction: str | None = None
    n_tokens_prompt: int | None = None
    message: dict[str, Any] = field(default_factory=dict)  # bytes, breakdown, tokens sent (C2C settings)
    timing: dict[str, float] = field(default_factory=dict)  # seconds per sample by stage
    error: str | None = None

    def to_json(self, gold: str) -> dict[str, Any]:
        out = {
            "pred": self.pred,
            "correct": self.error is None and self.pred == gold,
            "option_probs": self.option_probs,
            "n_tokens_prompt": self.n_tokens_prompt,
            "timing": self.timing,
            "error": self.error,
        }
        if self.text is not None:
            out.update(text=self.text, extraction=self.extraction)
        out.update(self.message)
        return out


@dataclass
class Prefill:
    """What a setting's prefill returns: last-position logits (B, V), the cache to decode from, per-row
    message records (C2C settings) and per-row stage timings."""

    logits_last: Tensor
    cache: Any
    records: list[dict[str, Any]]
    timing: dict[str, float]


PrefillFn = Callable[[PromptBatch], Prefill]


def error_text(exc: BaseException) -> str:
    """`Type: message` plus the innermost frame, so a recorded error says where it came from."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


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


@torch.no_grad()
def greedy_decode(
    model: Any, prefill: Prefill, batch: PromptBatch, *, max_new_tokens: int, eos_ids: set[int], pad_id: int
) -> list[list[int]]:
    """Greedy tokens per row, continuing from `prefill` (its cache is extended in place).

    Each step feeds one token per row with the grown attention mask and the row's own next position
    (last prompt position + 1), so a row decodes exactly as it would alone. Prompt pads stay masked (for
    aligned prompts this differs from upstream, whose decode steps ignore the padding mask, §1.2). Rows that emitted EOS
    are fed pads and ignored; their tokens stop at the EOS (included, as C2C counts gen_length).
    """
    device = batch.input_ids.device
    mask = batch.attention_mask
    next_pos = batch.position_ids[:, -1] + 1
    tokens = prefill.logits_last.argmax(-1)
    finished = torch.zeros(batch.size, dtype=torch.bool, device=device)
    generated: list[list[int]] = [[] for _ in range(batch.size)]
    for step in range(max_new_tokens):
        for row in range(batch.size):
            if not finished[row]:
                generated[row].append(int(tokens[row]))
        finished |= torch.tensor([int(t) in eos_ids for t in tokens], device=device)
        if bool(finished.all()) or step == max_new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
        out = model(
            input_ids=tokens.where(~finished, torch.full_like(tokens, pad_id))[:, None],
            attention_mask=mask,
            position_ids=next_pos[:, None],
            past_key_values=prefill.cache,
            use_cache=True,
        )
        next_pos = next_pos + 1
        tokens = out.logits[:, -1].argmax(-1)
    return generated


def pad_and_eos(tokenizer: Any, model: Any) -> tuple[int, set[int]]:
    """The pad id (the EOS when the tokenizer has none) and the EOS ids greedy decoding of `model` stops at."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    eos = eos if eos is not None else tokenizer.eos_token_id
    return pad_id, set(eos) if isinstance(eos, list | tuple) else {eos}


@dataclass
class SettingScorer:
    """Scores batches of items for one setting.

    tokenizer: the tokenizer whose chat template renders the prompt (the sharer's own for `sharer`, the
    receiver's otherwise); prefill: the setting's batched prefill; decoder: the model that continues
    decoding from the prefill cache (the receiver for C2C settings).
    """

    name: str
    tokenizer: Any
    prefill: PrefillFn
    decoder: Any
    protocol: str
    max_new_tokens: int = 64
    device: str | torch.device = "cpu"

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r} (allowed: {', '.join(PROTOCOLS)})")
        self.pad_id, self.eos_ids = pad_and_eos(self.tokenizer, self.decoder)

    def use_dataset(self, items: Sequence[Any]) -> None:
        """Told the evaluated items of a dataset before its batches (settings that pair items use it)."""

    def render(self, item: Any) -> RenderedPrompt:
        return render(self.tokenizer, item, protocol=self.protocol)

    def prepare(self, item: Any) -> tuple[RenderedPrompt, list[int]]:
        """Render one item (and its option token ids for `logits`); raises on an item this path rejects."""
        prompt = self.render(item)
        options = option_token_ids(self.tokenizer, item.labels) if self.protocol == "logits" else []
        return prompt, options

    def make_batch(self, prompts: Sequence[Any]) -> PromptBatch:
        return left_pad(prompts, self.pad_id, protocol=self.protocol)

    def score_batch(self, items: Sequence[Any]) -> list[RowScore]:
        """Score `items` together (raises if the batch fails; see `score_rows` for per-sample errors)."""
        return self._score_prepared(items, [self.prepare(item) for item in items])

    @torch.no_grad()
    def _score_prepared(
        self, items: Sequence[Any], prepared: Sequence[tuple[RenderedPrompt, list[int]]]
    ) -> list[RowScore]:
        prompts = [p for p, _ in prepared]
        batch = self.make_batch(prompts).to(self.device)
        prefill = self.prefill(batch)
        rows = [
            RowScore(n_tokens_prompt=len(p.ids), message=dict(r), timing=dict(prefill.timing))
            for p, r in zip(prompts, prefill.records)
        ]
        if self.protocol == "logits":
            for row, item, (_, ids), logits in zip(rows, items, prepared, prefill.logits_last):
                probs = torch.softmax(logits[ids].double(), dim=-1)
                row.option_probs = {label: float(p) for label, p in zip(item.labels, probs)}
                row.pred = item.labels[int(probs.argmax())]
            return rows
        t0 = time.perf_counter()
        generated = greedy_decode(
            self.decoder, prefill, batch, max_new_tokens=self.max_new_tokens, eos_ids=self.eos_ids, pad_id=self.pad_id
        )
        decode_s = (time.perf_counter() - t0) / batch.size
        for row, item, ids in zip(rows, items, generated):
            row.text = self.tokenizer.decode(ids, skip_special_tokens=True)
            found = extract_answer(row.text, letters="".join(item.labels))
            row.pred, row.extraction = found.letter, found.method
            row.timing["generate_s"] = decode_s
        return rows

    def score_rows(self, items: Sequence[Any]) -> list[RowScore]:
        """Score `items`, never raising: rows that cannot be rendered, or that make their batch fail, get
        `error` set (re-scored one at a time so that an exception is pinned on its own sample)."""
        results: list[RowScore | None] = [None] * len(items)
        good: list[tuple[int, tuple[RenderedPrompt, list[int]]]] = []
        for i, item in enumerate(items):
            try:
                good.append((i, self.prepare(item)))
            except Exception as exc:  # noqa: BLE001 - recorded per sample, counted by the runner
                results[i] = RowScore(error=error_text(exc))
        if good:
            try:
                rows = self._score_prepared([items[i] for i, _ in good], [p for _, p in good])
                for (i, _), row in zip(good, rows):
                    results[i] = row
            except Exception:  # noqa: BLE001 - the batch failed: find the sample(s) by scoring alone
                for i, prepared in good:
                    try:
                        results[i] = self._score_prepared([items[i]], [prepared])[0]
                    except Exception as exc:  # noqa: BLE001
                        results[i] = RowScore(error=error_text(exc))
        return [r if r is not None else RowScore(error="internal: row not scored") for r in results]


class StageClock:
    """Seconds spent inside `module.forward` calls, via forward hooks (removed on exit).

    Lets the C2C prefill report sharer / receiver / fusion time separately without instrumenting the fused
    forward itself. On CUDA each hook synchronizes, so the numbers are wall time of finished kernels.
    """

    def __init__(self, modules: dict[str, Any], device: Any) -> None:
        self.modules, self.seconds = modules, dict.fromkeys(modules, 0.0)
        self._sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
        self._handles: list[Any] = []
        self._t0: dict[str, float] = {}

    def __enter__(self) -> StageClock:
        for name, module in self.modules.items():
            self._handles.append(module.register_forward_pre_hook(self._start(name)))
            self._handles.append(module.register_forward_hook(self._stop(name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()

    def _start(self, name: str) -> Callable[..., None]:
        def hook(_module: Any, _args: Any) -> None:
            self._sync()
            self._t0[name] = time.perf_counter()

        return hook

    def _stop(self, name: str) -> Callable[..., None]:
        def hook(_module: Any, _args: Any, _out: Any) -> None:
            self._sync()
            self.seconds[name] += time.perf_counter() - self._t0[name]

        return hook


def c2c_prefill(receiver: Any, sharer: Any, fuser: Any, message_path: Any | None) -> PrefillFn:
    """Prefill of a C2C pair on a batch (`qc2c.fuser.fuse.fused_forward`).

    The batch's per-row fuse mask selects the fused tokens; the last `L - fused_end` columns (the response
    text for `logits`, the last prompt token for `generate`) form the unfused last section. With
    `message_path` None the sharer KV is fused as is (`c2c_fp16`); else it goes through the codec and the
    per-row records carry bytes, tokens sent and encode/decode seconds. Timing per sample: sharer prefill,
    receiver, and fuse_s = the rest minus the codec's encode + decode (projectors, cache writes, overhead).
    """
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
    Sections follow C2C's aligned evaluator (§4): message tokens fused, template tokens not, positions
    arange(L) over the padded sequence.
    """

    aligner: Any = None

    def prepare(self, item: Any) -> tuple[AlignedPrompt, list[int]]:
        from qc2c.eval.prompts import RESPONSE_TEXT, build_prompt

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
