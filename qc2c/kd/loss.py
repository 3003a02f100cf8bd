"""The KD loss over cached candidates: T²·KL(teacher ∥ student) on the top-K (+ random negative) ids only.

At each target position the candidate set is the teacher's top-K ids (plus R random other ids when the
cache has them). Both distributions are renormalised over the candidates at temperature T:

    p = softmax(teacher_logits[c] / T),  log q = log_softmax(student_logits[c] / T)
    kl = Σ_c p (log p − log q)           (per position; mean over the positions with a target)
    loss = kl_weight · T² · kl + hard_weight · CE(student, teacher top-1) + ce_weight · CE(student, next token)

T² keeps the gradient scale independent of T (Hinton et al. 2015, arXiv:1503.02531). The hard and CE terms
use the student's full-vocabulary logits at T = 1. `top1_agreement` is the fraction of target positions where
the student's argmax over the whole vocabulary is the teacher's top-1 id.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class KDWeights:
    temperature: float = 2.0
    kl_weight: float = 1.0
    hard_weight: float = 0.0
    ce_weight: float = 0.0


def kd_loss(
    student: Tensor,
    cand_idx: Tensor,
    cand_logits: Tensor,
    mask: Tensor,
    weights: KDWeights,
    labels: Tensor | None = None,
) -> dict[str, Tensor]:
    """Loss terms. student (B, T, V) logits; cand_idx (B, T, C) int64, teacher's top-1 first; cand_logits (B, T, C)
    raw teacher logits; mask (B, T) bool; labels (B, T) next-token ids (-100 = none), for the CE term.

    Returns {loss, kl, hard, ce, top1_agreement, n_positions}; every term is a 0-dim tensor (loss with grad)."""
    t = weights.temperature
    sel = mask.bool()
    n = int(sel.sum())
    zero = student.sum() * 0.0  # keeps the graph when a batch has no target position
    if n == 0:
        return {
            "loss": zero,
            "kl": zero.detach(),
            "hard": zero.detach(),
            "ce": zero.detach(),
            "top1_agreement": zero.detach(),
            "n_positions": torch.tensor(0),
        }
    s_full = student[sel].float()  # (P, V)
    idx, t_logits = cand_idx[sel].long(), cand_logits[sel].float()  # (P, C)
    log_q = F.log_softmax(s_full.gather(1, idx) / t, dim=-1)
    log_p = F.log_softmax(t_logits / t, dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1).mean()
    top1 = idx[:, 0]
    hard = F.cross_entropy(s_full, top1) if weights.hard_weight else zero.detach()
    ce = zero.detach()
    if weights.ce_weight and labels is not None and bool((labels[sel] >= 0).any()):
        ce = F.cross_entropy(s_full, labels[sel].long(), ignore_index=-100)
    loss = weights.kl_weight * t * t * kl + weights.hard_weight * hard + weights.ce_weight * ce
    agree = (s_full.detach().argmax(-1) == top1).float().mean()
    return {
        "loss": loss,
        "kl": kl.detach(),
        "hard": hard.detach(),
        "ce": ce.detach(),
        "top1_agreement": agree,
        "n_positions": torch.tensor(n),
    }
