"""Text-to-text settings `text_answer` and `text_analysis` (C2C's `two_stage` baselines, docs/c2c.md §5).

The question a compressed KV message must answer is whether it beats what else the sharer could send:
its own words. Here the sharer writes greedily (bounded by `eval.text.max_new_tokens`, stop at EOS) either
its answer to the question (the usual multiple-choice prompt, its own chat template) or a short analysis of
it (`qc2c.eval.prompts.ANALYSIS_TEMPLATE`); the receiver then reads that text as a context paragraph before
the question (`with_context`) and is scored like the receiver baseline, with the run's protocol.

* The message is the text: bytes = `len(text.encode("utf-8"))`, tokens sent = the receiver's tokens of it
  (the text is re-tokenized by the receiver's tokenizer, so different-tokenizer pairs need no alignment).
* Timing: the sharer's prompt prefill (`sharer_prefill_s`), its decoding (`sharer_decode_s`, a stage of its
  own) and the receiver (`receiver_s`), per sample.
* The sharer's batch is left-padded like every batch here, so a row writes what it would write alone.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from qc2c.eval.batching import left_pad
from qc2c.eval.prefill import decode_after, plain_prefill
from qc2c.eval.prompts import RenderedPrompt, render, render_analysis, with_context
from qc2c.eval.score import RowScore, SettingScorer, error_text, pad_and_eos

KINDS = ("text_answer", "text_analysis")


@dataclass
class Written:
    """What the sharer wrote for one item (or why it could not)."""

    text: str = ""
    n_generated: int = 0
    timing: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass
class TextScorer(SettingScorer):
    """A text-to-text setting: `tokenizer`/`prefill`/`decoder` are the receiver's; `sharer` writes the text."""

    sharer: Any = None
    sharer_tokenizer: Any = None
    text_max_new_tokens: int = 64
    written: dict[str, Written] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.name not in KINDS:
            raise ValueError(f"unknown text setting {self.name!r} (allowed: {', '.join(KINDS)})")
        self.sharer_pad, self.sharer_eos = pad_and_eos(self.sharer_tokenizer, self.sharer)

    def sharer_prompt(self, item: Any) -> RenderedPrompt:
        if self.name == "text_answer":
            return render(self.sharer_tokenizer, item, protocol="generate")
        return render_analysis(self.sharer_tokenizer, item)

    def write(self, items: Sequence[Any]) -> list[Written]:
        """The sharer's texts for `items`, batched (raises if the batch fails)."""
        batch = left_pad([self.sharer_prompt(it) for it in items], self.sharer_pad, protocol="generate")
        batch = batch.to(self.device)
        prefill = plain_prefill(self.sharer, "sharer_prefill_s")(batch)
        t0 = time.perf_counter()
        generated = decode_after(
            self.sharer,
            prefill,
            batch,
            max_new_tokens=self.text_max_new_tokens,
            eos_ids=self.sharer_eos,
            pad_id=self.sharer_pad,
        )
        timing = {**prefill.timing, "sharer_decode_s": (time.perf_counter() - t0) / batch.size}
        return [
            Written(self.sharer_tokenizer.decode(ids, skip_special_tokens=True).strip(), len(ids), dict(timing))
            for ids in generated
        ]

    def score_rows(self, items: Sequence[Any]) -> list[RowScore]:
        """The sharer writes for the whole batch (one item at a time if the batch fails), then the receiver
        reads; an item whose text could not be written gets that error."""
        try:
            written = self.write(items)
        except Exception:  # noqa: BLE001 - pin the failure on its sample(s)
            written = []
            for item in items:
                try:
                    written += self.write([item])
                except Exception as exc:  # noqa: BLE001 - recorded per sample, counted by the runner
                    written.append(Written(error=error_text(exc)))
        self.written = {item.id: w for item, w in zip(items, written)}
        readable = [i for i, w in enumerate(written) if w.error is None]
        rows = super().score_rows([items[i] for i in readable]) if readable else []
        out = [RowScore(error=f"sharer text: {w.error}") for w in written]
        for i, row in zip(readable, rows):
            out[i] = row
        return out

    def prepare(self, item: Any) -> tuple[RenderedPrompt, list[int]]:
        return super().prepare(with_context(item, self.written[item.id].text))

    def _score_prepared(self, items: Sequence[Any], prepared: Sequence[tuple[Any, list[int]]]) -> list[RowScore]:
        rows = super()._score_prepared(items, prepared)
        for row, item in zip(rows, items):
            w = self.written[item.id]
            nbytes = len(w.text.encode("utf-8"))
            row.timing.update(w.timing)
            row.message.update(
                sharer_text=w.text,
                nbytes=nbytes,
                nbytes_breakdown={"payload": nbytes, "scales": 0, "indices": 0, "header": 0},
                n_tokens_sent=len(self.tokenizer(w.text, add_special_tokens=False)["input_ids"]),
                n_tokens_generated=w.n_generated,
            )
        return rows
