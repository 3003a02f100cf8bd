"""Pretrain a demo model from scratch on the facts it is meant to know.

Each step takes one batch of statements ("Topodi's color is red.", loss on every token) and one batch of
multiple-choice questions rendered exactly as evaluation renders them (qc2c.eval.prompts, logits protocol:
chat template, C2C's prompt, "The correct answer is"), with the loss on the answer letter only.

Training stops when the model answers a fixed sample of its own facts' questions at `target` accuracy, or
after `max_steps`.

A second stage (`AnswerTrainer`) then teaches the model to have the answer *inside the prompt*: C2C's prompt
ends its user turn with "The correct answer is", and a model that reads it should know the answer there, as
large instruction-tuned models do. The small demo models only form the answer at the very last token, in their
last layer, which no KV cache holds (a layer's K/V are computed from the layer below it); a fuser could then
only memorise entities. The second stage adds a loss on the answer letter read from the next-to-last layer at
the user turn's last token, so the top layer's K/V there carry the answer (a linear probe trained on C facts
reads it on held-out B facts at 0.99, against 0.5 before). The fact-answering loss stays in the step.

A demo model is *meant* to know its facts, so these questions are also test items (the receiver's are the
`shared` ones); what the demo tests is the fuser, which never sees a B fact. Everything
is seeded: the same spec, world, torch version and thread count give the same weights.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from qc2c.demo.world import Fact, ask, rng_for
from qc2c.eval.datasets import MCItem
from qc2c.eval.prompts import option_token_ids, render


@dataclass(frozen=True)
class PretrainSpec:
    """Optimisation settings of one demo model."""

    max_steps: int = 4000
    batch_size: int = 64  # statements per step (short: they carry the facts cheaply)
    question_batch_size: int = 32  # questions per step (long: they teach the format and the letter)
    lr: float = 3e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    probe_every: int = 100
    probe_size: int = 256
    target: float | None = 0.99  # probe accuracy at which training stops (None: run max_steps)
    seed: int = 0


# The second stage's settings (see the module docstring): a few hundred steps from the first stage's weights.
ANSWER_STAGE = PretrainSpec(max_steps=300, lr=1e-3, warmup_steps=20, target=None)
LENS_LAYER_FROM_END = 2  # hidden_states[-2]: the input of the last layer, whose K/V the cache holds


def question_ids(tokenizer: Any, fact: Fact) -> tuple[list[int], int, int]:
    """(prompt ids as evaluation renders them, the answer letter's id, the position of the user turn's answer
    phrase: the last token of the last "The correct answer is" inside the instruction)."""
    q = ask(fact)
    item = MCItem("train", q.fact.question, list(q.choices), ["A", "B", "C", "D"], q.answer)
    letters = option_token_ids(tokenizer, item.labels)
    prompt = render(tokenizer, item, protocol="logits")
    return prompt.ids, letters[item.labels.index(q.answer)], phrase_end(prompt.instruction_ids, prompt.response_ids)


def phrase_end(ids: Sequence[int], phrase: Sequence[int]) -> int:
    """Index of the last token of the last occurrence of `phrase` in `ids`; ValueError when it does not occur."""
    n = len(phrase)
    for start in range(len(ids) - n, -1, -1):
        if list(ids[start : start + n]) == list(phrase):
            return start + n - 1
    raise ValueError("the answer phrase does not occur in the instruction")


def _pad(rows: Sequence[list[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


class FactTrainer:
    """Pretrains `model` on `facts` (statements + questions) with `tokenizer`; see the module docstring."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, facts: Sequence[Fact], spec: PretrainSpec) -> None:
        self.model, self.tok, self.facts, self.spec = model, tokenizer, list(facts), spec
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.letters = option_token_ids(tokenizer, ["A", "B", "C", "D"])
        self.statements = [
            tokenizer(s, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
            for f in self.facts
            for s in f.statements()
        ]
        self.questions = [question_ids(tokenizer, f) for f in self.facts]
        probe_rng = rng_for(spec.seed, "probe")
        self.probe = probe_rng.sample(self.questions, min(spec.probe_size, len(self.questions)))
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)

    def lr_at(self, step: int) -> float:
        s = self.spec
        if step < s.warmup_steps:
            return s.lr * (step + 1) / s.warmup_steps
        frac = (step - s.warmup_steps) / max(1, s.max_steps - s.warmup_steps)
        return s.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))

    def step_loss(self, step: int) -> Tensor:
        rng = rng_for(self.spec.seed, "batch", step)
        n = self.spec.batch_size
        stmts = [self.statements[rng.randrange(len(self.statements))] for _ in range(n)]
        ids, mask = _pad(stmts, self.pad_id)
        logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        labels = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
        loss_s = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=-100)
        qs = [self.questions[rng.randrange(len(self.questions))] for _ in range(self.spec.question_batch_size)]
        return loss_s + self.question_loss(qs)

    def question_forward(
        self, rows: Sequence[tuple[list[int], int, int]], *, hidden: bool = False
    ) -> tuple[Any, Tensor, Tensor]:
        """The model's output on the padded prompts, each prompt's last position (B,) and the answers' ids (B,)."""
        ids, mask = _pad([r[0] for r in rows], self.pad_id)
        out = self.model(input_ids=ids, attention_mask=mask, output_hidden_states=hidden)
        return out, mask.sum(1) - 1, torch.tensor([r[1] for r in rows])

    def question_logits(self, rows: Sequence[tuple[list[int], int, int]]) -> tuple[Tensor, Tensor]:
        """Logits at each prompt's last token over the vocabulary (B, V), and the answers' ids (B,)."""
        out, last, answers = self.question_forward(rows)
        return out.logits[torch.arange(len(rows)), last].float(), answers

    def question_loss(self, rows: Sequence[tuple[list[int], int, int]]) -> Tensor:
        logits, answers = self.question_logits(rows)
        return F.cross_entropy(logits, answers)

    @torch.no_grad()
    def probe_accuracy(self) -> float:
        self.model.eval()
        correct = 0
        for i in range(0, len(self.probe), 128):
            logits, answers = self.question_logits(self.probe[i : i + 128])
            letters = torch.tensor(self.letters)
            picked = letters[logits[:, letters].argmax(-1)]
            correct += int((picked == answers).sum())
        self.model.train()
        return correct / len(self.probe)

    def train(self, log: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Run to the probe target or max_steps; returns steps, final probe accuracy, loss and wall time."""
        torch.manual_seed(self.spec.seed)
        self.model.train()
        t0, acc, loss_v, step = time.monotonic(), 0.0, float("nan"), 0
        for step in range(1, self.spec.max_steps + 1):
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr_at(step - 1)
            loss = self.step_loss(step)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            loss_v = float(loss.detach())
            if not math.isfinite(loss_v):
                raise FloatingPointError(f"demo pretraining: step {step}: loss is {loss_v}")
            if step % self.spec.probe_every == 0 or step == self.spec.max_steps:
                acc = self.probe_accuracy()
                if log is not None:
                    log({"step": step, "loss": loss_v, "probe_accuracy": acc, "elapsed_s": time.monotonic() - t0})
                if self.spec.target is not None and acc >= self.spec.target:
                    break
        self.model.eval()
        return {"steps": step, "probe_accuracy": acc, "loss": loss_v, "wall_s": round(time.monotonic() - t0, 1)}


class AnswerTrainer(FactTrainer):
    """The second stage (module docstring): FactTrainer's step plus the answer loss at the user turn's answer
    phrase, read through the final norm and output layer from the next-to-last layer's hidden state."""

    def question_loss(self, rows: Sequence[tuple[list[int], int, int]]) -> Tensor:
        out, last, answers = self.question_forward(rows, hidden=True)
        rows_ix = torch.arange(len(rows))
        final = out.logits[rows_ix, last].float()
        inner = out.hidden_states[-LENS_LAYER_FROM_END][rows_ix, torch.tensor([r[2] for r in rows])]
        lens = self.model.get_output_embeddings()(self.model.model.norm(inner)).float()
        return F.cross_entropy(final, answers) + F.cross_entropy(lens, answers)
