"""Stage C: the latent settings of a kind: eval run, scored on the `demo` dataset's items like any setting.

For each item (looked up in the demo world by id, `qc2c.latent.data.item_for_id`) the encoder reads the
source, the wire goes through its codec as real bytes (`qc2c.latent.codec`), the run's receiver decodes from
it after the anchor "Answer:", and the row reports:

* multiple choice (the setting's accuracy, paired with every other setting of the run): the option whose
  tokens are most likely after the anchor (`option_probs`: softmax over the four summed log-probabilities);
* short answer: greedy `latent_answer` with exact match `em` and token F1 `f1` against the value,
  first-token acceptance `first_ok` (the greedy first token is the value's first token) and `nll_per_token`
  of the value and EOS under teacher forcing;
* `nbytes` (+ breakdown) of the packed wire, or of the source's UTF-8 text for `latent_text`.

`latent_placebo` decodes another item's fp16 wire (the derangement of `qc2c.eval.placebo`): what a wire
that carries nothing about this item scores. A gain over it is the wire's content.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from qc2c.eval.placebo import derangement
from qc2c.eval.score import RowScore, SettingScorer, error_text
from qc2c.latent.checkpoint import LoadedWire
from qc2c.latent.codec import through_wire, wire_scheme
from qc2c.latent.data import LatentItem, decoder_tokens, item_for_id, source_ids
from qc2c.latent.decode import Prefix, answer_logits, greedy_answers, option_logprobs
from qc2c.latent.losses import prefix_for, text_prompts
from qc2c.latent.model import MAX_SOURCE, model_key


def normalize(text: str) -> list[str]:
    """SQuAD-style answer normalisation: lower case, no punctuation or articles, split on white space."""
    text = re.sub(r"[^\w\s]", " ", text.lower())
    return [w for w in text.split() if w not in ("a", "an", "the")]


def exact_match(pred: str, gold: str) -> bool:
    return normalize(pred) == normalize(gold)


def token_f1(pred: str, gold: str) -> float:
    p, g = normalize(pred), normalize(gold)
    common = sum(min(p.count(w), g.count(w)) for w in set(p))
    if not p or not g or common == 0:
        return float(p == g)
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


@dataclass
class LatentEvaluator:
    """A loaded wire for one run: builds a scorer per latent setting for the run's receiver."""

    loaded: LoadedWire
    encoder_tokenizer: Any
    receiver_ref: str
    group_size: int | None = None
    max_new_tokens: int = 6

    def scorer(self, name: str, model: Any, tokenizer: Any, *, device: Any, seed: int) -> LatentScorer:
        key = model_key(self.receiver_ref)
        if key not in self.loaded.wire.adapters:
            served = ", ".join(self.loaded.decoders.values())
            raise ValueError(f"the latent wire in {self.loaded.root} has no adapter for {self.receiver_ref} ({served})")
        return LatentScorer(
            name,
            tokenizer,
            _no_prefill,
            model,
            "logits",
            self.max_new_tokens,
            device,
            evaluator=self,
            key=key,
            seed=seed,
        )


def _no_prefill(batch: Any) -> Any:
    raise TypeError("latent settings score whole rows (score_rows), not from a prefill")


@dataclass
class LatentScorer(SettingScorer):
    evaluator: LatentEvaluator | None = None
    key: str = ""
    seed: int = 0
    partners: dict[str, LatentItem] = field(default_factory=dict)

    def use_dataset(self, items: Sequence[Any]) -> None:
        if self.name == "latent_placebo":
            ids = [it.id for it in items]
            self.partners = {a: item_for_id(b) for a, b in derangement(ids, self.seed).items()}

    def score_rows(self, items: Sequence[Any]) -> list[RowScore]:
        try:
            return self._score(items)
        except Exception:  # noqa: BLE001 - pin the error on its sample(s)
            out = []
            for item in items:
                try:
                    out += self._score([item])
                except Exception as exc:  # noqa: BLE001 - recorded per sample, counted by the runner
                    out.append(RowScore(error=error_text(exc)))
            return out

    @torch.no_grad()
    def _score(self, items: Sequence[Any]) -> list[RowScore]:
        t0 = time.perf_counter()
        latent = [item_for_id(it.id) for it in items]
        tokens = decoder_tokens(self.tokenizer, latent)
        records, prefix, prompts = self._message(items, latent, tokens)
        options = [
            [self.tokenizer(" " + o, add_special_tokens=False)["input_ids"] for o in it.options] for it in latent
        ]
        scores = option_logprobs(self.decoder, prefix, prompts, options, tokens.pad)
        generated = greedy_answers(
            self.decoder, prefix, prompts, max_new_tokens=self.max_new_tokens, eos=tokens.eos, pad=tokens.pad
        )
        got = answer_logits(self.decoder, prefix, prompts, tokens.answers, tokens.pad)
        nll = torch.nn.functional.cross_entropy(got.logits.transpose(1, 2).float(), got.targets, reduction="none")
        seconds = (time.perf_counter() - t0) / len(items)
        rows = []
        for i, (item, it) in enumerate(zip(items, latent)):
            probs = torch.softmax(scores[i], dim=-1)
            text = self.tokenizer.decode(generated[i], skip_special_tokens=True).strip()
            n_ans = int(got.mask[i].sum())
            quality = {
                "latent_answer": text,
                "em": exact_match(text, it.answer),
                "f1": token_f1(text, it.answer),
                "first_ok": bool(generated[i][:1] == tokens.answers[i][:1]),
                "nll_per_token": float(nll[i, :n_ans].mean()),
            }
            rows.append(
                RowScore(
                    pred=item.labels[int(probs.argmax())],
                    option_probs={label: float(p) for label, p in zip(item.labels, probs)},
                    n_tokens_prompt=prefix.n_embeds + len(prompts[i]),
                    message={**records[i], **quality},
                    timing={"latent_s": seconds},
                )
            )
        return rows

    def _message(self, items: Sequence[Any], latent: list[LatentItem], tokens: Any) -> tuple[list[dict], Prefix, list]:
        """Per-row message records, the decoder's prefix and its prompts for this setting."""
        ev = self.evaluator
        if self.name == "latent_text":
            records = [_record(len(it.source.encode("utf-8")), 0, len(src)) for it, src in zip(latent, tokens.sources)]
            return records, Prefix(), text_prompts(tokens)
        sources = [self.partners[it.id] for it in items] if self.name == "latent_placebo" else latent
        ids, mask = source_ids(ev.encoder_tokenizer, [s.source for s in sources], MAX_SOURCE)
        wire = ev.loaded.wire
        z = wire.encoder(ids.to(self.device), mask.to(self.device))
        scheme_of = "latent" if self.name == "latent_placebo" else self.name
        decoded, messages = through_wire(z, wire_scheme(scheme_of, ev.group_size))
        records = [{**_breakdown(msg), "n_tokens_sent": msg.latent_len} for msg in messages]
        if self.name == "latent_placebo":
            for rec, s in zip(records, sources):
                rec["partner_id"] = s.id
        return records, prefix_for(wire, self.key, decoded), [tokens.anchor] * len(items)


def _breakdown(msg: Any) -> dict[str, Any]:
    return {"nbytes": msg.nbytes, "nbytes_breakdown": msg.breakdown()}


def _record(nbytes: int, header: int, n_tokens: int) -> dict[str, Any]:
    parts = {"payload": nbytes - header, "scales": 0, "indices": 0, "header": header}
    return {"nbytes": nbytes, "nbytes_breakdown": parts, "n_tokens_sent": n_tokens}


def load_evaluator(final: Any, receiver_ref: str, *, group_size: int | None, max_new_tokens: int) -> LatentEvaluator:
    """The wire in `final` (a latent run's final/ folder) with its encoder's tokenizer, for `receiver_ref`."""
    from pathlib import Path

    from transformers import AutoTokenizer

    from qc2c.latent.checkpoint import load_wire
    from qc2c.models.pair import resolve_model_dir

    loaded = load_wire(Path(final))
    enc_ref = loaded.decoders[loaded.encoder_tokenizer]
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_dir(enc_ref, "main"))
    return LatentEvaluator(loaded, tokenizer, receiver_ref, group_size, max_new_tokens)
