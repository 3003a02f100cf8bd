"""Batched scoring of multiple-choice items under C2C's two protocols, for one setting at a time.

Settings (names as in the manifest and results; `qc2c.eval.settings` builds a scorer per setting):
`receiver` / `sharer` (one model alone, its own chat template) and the C2C settings `c2c_fp16`
(uncompressed fusion) and `compressed` (the manifest's kv codec as the message path).

Protocols (docs/c2c.md §5):

* `logits`: one forward over chat(prompt) + "The correct answer is"; softmax over the option letters' first
  tokens (`encode(" X")[0]`) at the last position; pred = argmax. C2C fuses the instruction tokens only.
* `generate`: greedy decoding for max_new_tokens (stop at EOS; `qc2c.models.decode`), text decoded with
  special tokens skipped, letter by `qc2c.eval.extract`. C2C fuses every prompt token but the last.

A scorer is a setting's prefill (`qc2c.eval.prefill`) plus this module's scoring of its output
(`score_prefill`). A run scores its C2C settings from one receiver and one sharer prefill per batch
(`qc2c.eval.shared`); `score_rows` is each setting's own path. Aligned (different-tokenizer) pairs are
scored row by row (`qc2c.eval.aligned`).

Batches are left-padded (`qc2c.eval.batching`) so each row's positions, masks and fused tokens equal its
batch-size-1 values; predictions are identical to scoring one sample at a time (tested). A row that cannot
be rendered (bad item) gets an error and is left out of the batch; if a batch raises, the caller re-scores
its rows one by one so that the exception lands on the sample that caused it (`score_rows`).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from qc2c.eval.batching import PromptBatch, left_pad
from qc2c.eval.extract import extract_answer
from qc2c.eval.prefill import Prefill, PrefillFn, decode_after
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


def error_text(exc: BaseException) -> str:
    """`Type: message` plus the innermost frame, so a recorded error says where it came from."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


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
        batch = self.make_batch([p for p, _ in prepared]).to(self.device)
        return self.score_prefill(items, prepared, batch, self.prefill(batch))

    @torch.no_grad()
    def score_prefill(
        self,
        items: Sequence[Any],
        prepared: Sequence[tuple[RenderedPrompt, list[int]]],
        batch: PromptBatch,
        prefill: Prefill,
    ) -> list[RowScore]:
        """Score `items` from their batch's prefill (this setting's own, or one built from shared prefills by
        `qc2c.eval.shared`): option probabilities (`logits`), or greedy decoding from the prefill's cache."""
        prompts = [p for p, _ in prepared]
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
        generated = decode_after(
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
