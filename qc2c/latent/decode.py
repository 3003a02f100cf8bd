"""A frozen decoder reading a latent prefix (or a text prompt) and then tokens: answer logits, greedy answers,
option log-likelihoods.

    [deep prefix K/V (P, every layer)] [adapted wire (M embeddings)] [tokens: anchor, answer ...]

The deep prefix goes in as `past_key_values` (a fresh DynamicCache per call, so gradients reach it), the
wire as `inputs_embeds` before the tokens' own embeddings, positions continue after the deep prefix. Rows
are right-padded: with a causal mask a real token never sees the padding after it, so each row's logits
equal its batch-size-1 values (to float rounding).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass
class Prefix:
    """What a decoder reads before its tokens: adapted wire (B, M, hidden) or None (text prompting), and the
    deep prefix's per-layer (K, V) or None."""

    embeds: Tensor | None = None
    deep: list[tuple[Tensor, Tensor]] | None = None

    def rows(self, index: Sequence[int]) -> Prefix:
        """The prefix of a subset of the batch's rows."""
        idx = torch.as_tensor(list(index), dtype=torch.long)
        embeds = self.embeds[idx.to(self.embeds.device)] if self.embeds is not None else None
        deep = [(k[idx.to(k.device)], v[idx.to(v.device)]) for k, v in self.deep] if self.deep else None
        return Prefix(embeds, deep)

    @property
    def n_embeds(self) -> int:
        return 0 if self.embeds is None else self.embeds.shape[1]


def forward_rows(model: Any, prefix: Prefix, rows: Sequence[Sequence[int]], pad: int) -> Tensor:
    """Logits (B, M + T, V) of prefix + each row's tokens (right-padded to T)."""
    from transformers import DynamicCache

    device = model.get_input_embeddings().weight.device
    width = max(1, max(len(r) for r in rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long, device=device)
    mask = torch.zeros(len(rows), width, dtype=torch.long, device=device)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(list(r), dtype=torch.long, device=device)
        mask[i, : len(r)] = 1
    embeds = model.get_input_embeddings()(ids)
    if prefix.embeds is not None:
        embeds = torch.cat([prefix.embeds.to(embeds.dtype), embeds], dim=1)
        mask = torch.cat([torch.ones(len(rows), prefix.n_embeds, dtype=torch.long, device=device), mask], dim=1)
    cache, n_deep = None, 0
    if prefix.deep:
        n_deep = prefix.deep[0][0].shape[2]
        cache = DynamicCache(config=model.config)
        for layer, (k, v) in enumerate(prefix.deep):
            cache.update(k.to(embeds.dtype), v.to(embeds.dtype), layer)
        mask = torch.cat([torch.ones(len(rows), n_deep, dtype=torch.long, device=device), mask], dim=1)
    positions = torch.arange(n_deep, n_deep + embeds.shape[1], device=device).unsqueeze(0).expand(len(rows), -1)
    out = model(
        inputs_embeds=embeds,
        attention_mask=mask,
        position_ids=positions,
        past_key_values=cache,
        use_cache=cache is not None,
    )
    return out.logits


@dataclass
class AnswerLogits:
    """Per row, the logits that predict each answer token: logits (B, A, V), targets (B, A), mask (B, A)."""

    logits: Tensor
    targets: Tensor
    mask: Tensor


def answer_logits(
    model: Any, prefix: Prefix, prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[int]], pad: int
) -> AnswerLogits:
    """Teacher forcing: prefix + prompt + answer[:-1]; position (M + len(prompt) - 1 + j) predicts answer[j]."""
    rows = [list(p) + list(a[:-1]) for p, a in zip(prompts, answers)]
    full = forward_rows(model, prefix, rows, pad)
    n_ans = max(len(a) for a in answers)
    logits = full.new_zeros(len(rows), n_ans, full.shape[-1])
    targets = torch.zeros(len(rows), n_ans, dtype=torch.long, device=full.device)
    mask = torch.zeros(len(rows), n_ans, dtype=torch.bool, device=full.device)
    for i, (p, a) in enumerate(zip(prompts, answers)):
        start = prefix.n_embeds + len(p) - 1
        logits[i, : len(a)] = full[i, start : start + len(a)]
        targets[i, : len(a)] = torch.tensor(list(a), device=full.device)
        mask[i, : len(a)] = True
    return AnswerLogits(logits, targets, mask)


@torch.no_grad()
def greedy_answers(
    model: Any, prefix: Prefix, prompts: Sequence[Sequence[int]], *, max_new_tokens: int, eos: int, pad: int
) -> list[list[int]]:
    """Greedy continuation of prefix + prompt for each row, stopping at `eos` (not included); re-runs the
    whole (short) sequence per token, which is simple and exact for these few-token answers."""
    rows = [list(p) for p in prompts]
    out: list[list[int]] = [[] for _ in prompts]
    live = list(range(len(prompts)))
    for _ in range(max_new_tokens):
        if not live:
            break
        logits = forward_rows(model, prefix.rows(live), [rows[i] for i in live], pad)
        still = []
        for j, i in enumerate(live):
            token = int(logits[j, prefix.n_embeds + len(rows[i]) - 1].argmax())
            if token == eos:
                continue
            out[i].append(token)
            rows[i].append(token)
            still.append(i)
        live = still
    return out


@torch.no_grad()
def option_logprobs(
    model: Any, prefix: Prefix, prompts: Sequence[Sequence[int]], options: Sequence[Sequence[Sequence[int]]], pad: int
) -> Tensor:
    """(B, n_options) summed log-probabilities of each row's option token sequences after prefix + prompt."""
    n_options = len(options[0])
    scores = torch.zeros(len(prompts), n_options, dtype=torch.float64)
    for o in range(n_options):
        conts = [list(opts[o]) for opts in options]
        # the option's tokens followed by a dummy last token: answer_logits predicts all but the last input
        got = answer_logits(model, prefix, prompts, [c + [pad] for c in conts], pad)
        logp = torch.log_softmax(got.logits.double(), dim=-1)
        for i, c in enumerate(conts):
            scores[i, o] = sum(float(logp[i, j, t]) for j, t in enumerate(c))
    return scores
