"""The latent wire's objectives for one decoder and one batch (names as in diagnostics.jsonl).

* `tf`    teacher-forced CE over the whole answer (value tokens and EOS), given wire + anchor;
* `first` CE of the answer's first token (what first-token acceptance, `first_acc`, measures);
* `kCE`   CE over the answer's first K tokens (K grows over training: `k_start` -> `k_end`);
* `KD`    KL(text-prompted decoder || latent-prompted decoder) over the answer positions: the same frozen
          decoder reading the source as text is the teacher (no gradient);
* `gist`  CE of the gist head's reconstruction of the source's first decoder tokens (0 without a gist head).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from qc2c.latent.data import DecoderTokens
from qc2c.latent.decode import AnswerLogits, Prefix, answer_logits
from qc2c.latent.model import GIST_TOKENS, LatentWire


def masked_ce(got: AnswerLogits, upto: int | None = None) -> Tensor:
    """Mean CE over the answer positions (only the first `upto` of each answer when given)."""
    mask = got.mask if upto is None else got.mask & (torch.arange(got.mask.shape[1], device=got.mask.device) < upto)
    ce = F.cross_entropy(got.logits.flatten(0, 1).float(), got.targets.flatten(), reduction="none")
    return (ce * mask.flatten()).sum() / mask.sum().clamp(min=1)


def kd_loss(student: AnswerLogits, teacher: AnswerLogits) -> Tensor:
    """KL(teacher || student) per answer position, averaged over the answer positions."""
    log_s = torch.log_softmax(student.logits.float(), dim=-1)
    log_t = torch.log_softmax(teacher.logits.float(), dim=-1)
    kl = (log_t.exp() * (log_t - log_s)).sum(-1)
    return (kl * student.mask).sum() / student.mask.sum().clamp(min=1)


def gist_loss(wire: LatentWire, key: str, adapted: Tensor, model: Any, tokens: DecoderTokens) -> Tensor:
    """CE of the gist head's logits against the source's first GIST_TOKENS decoder tokens (padding ignored)."""
    if key not in wire.gist:
        return adapted.new_zeros(())
    logits = wire.gist[key](adapted, model.get_output_embeddings().weight)
    targets = torch.full((adapted.shape[0], GIST_TOKENS), -100, dtype=torch.long, device=adapted.device)
    for i, src in enumerate(tokens.sources):
        row = src[:GIST_TOKENS]
        targets[i, : len(row)] = torch.tensor(row, device=adapted.device)
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)


def prefix_for(wire: LatentWire, key: str, z: Tensor) -> Prefix:
    """The decoder `key`'s prefix for wire `z` (B, M, d_z): adapted embeddings, and its deep prefix if any."""
    deep = wire.deep[key](z) if key in wire.deep else None
    return Prefix(wire.adapters[key](z), deep)


def text_prompts(tokens: DecoderTokens) -> list[list[int]]:
    """The text-prompted path's prompts: the source's tokens, then the anchor."""
    return [src + tokens.anchor for src in tokens.sources]


def objectives(wire: LatentWire, key: str, model: Any, z: Tensor, tokens: DecoderTokens, k: int) -> dict[str, Any]:
    """Every objective of decoder `key` on wire `z`, plus `first_acc` (a float): the losses are tensors in the
    graph of the trainable parts (the decoder is frozen; KD's teacher runs without a graph)."""
    prefix = prefix_for(wire, key, z)
    anchors = [tokens.anchor] * z.shape[0]
    got = answer_logits(model, prefix, anchors, tokens.answers, tokens.pad)
    with torch.no_grad():
        teacher = answer_logits(model, Prefix(), text_prompts(tokens), tokens.answers, tokens.pad)
    first_ok = got.logits[:, 0].argmax(-1) == got.targets[:, 0]
    return {
        "tf": masked_ce(got),
        "first": masked_ce(got, 1),
        "kCE": masked_ce(got, k),
        "KD": kd_loss(got, teacher),
        "gist": gist_loss(wire, key, prefix.embeds, model, tokens),
        "first_acc": float(first_ok.float().mean()),
    }
