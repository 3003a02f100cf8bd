"""The KD loss against a KL computed by hand on a toy case.
.venv/bin/python -m pytest tests/qc2c/kd/test_loss.py -q"""

from __future__ import annotations

import math

import pytest
import torch

from qc2c.kd.loss import KDWeights, kd_loss


def _softmax(xs: list[float]) -> list[float]:
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


def test_kl_over_the_candidates_matches_the_hand_computed_value() -> None:
    # one row, two positions (the second masked out), vocabulary 5, candidates {3, 0, 4} (teacher top-1 first)
    student = torch.tensor([[[0.5, -1.0, 2.0, 1.5, 0.0], [9.0, 9.0, 9.0, 9.0, 9.0]]])
    idx = torch.tensor([[[3, 0, 4], [0, 1, 2]]])
    teacher = torch.tensor([[[2.0, 1.0, -0.5], [5.0, 0.0, 0.0]]])
    mask = torch.tensor([[True, False]])
    T = 2.0
    p = _softmax([2.0 / T, 1.0 / T, -0.5 / T])
    q = _softmax([1.5 / T, 0.5 / T, 0.0 / T])  # the student's logits at ids 3, 0, 4
    kl = sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q, strict=True))
    terms = kd_loss(student, idx, teacher, mask, KDWeights(temperature=T))
    assert float(terms["kl"]) == pytest.approx(kl, rel=1e-6)
    assert float(terms["loss"]) == pytest.approx(T * T * kl, rel=1e-6)
    assert int(terms["n_positions"]) == 1
    assert float(terms["top1_agreement"]) == 0.0  # the student's argmax is id 2, the teacher's top-1 is id 3


def test_hard_and_ce_terms_and_their_weights() -> None:
    student = torch.tensor([[[0.5, -1.0, 2.0, 1.5, 0.0]]])
    idx, teacher, mask = torch.tensor([[[3, 0]]]), torch.tensor([[[2.0, 1.0]]]), torch.tensor([[True]])
    log_z = math.log(sum(math.exp(x) for x in [0.5, -1.0, 2.0, 1.5, 0.0]))
    w = KDWeights(temperature=1.0, kl_weight=0.5, hard_weight=2.0, ce_weight=3.0)
    terms = kd_loss(student, idx, teacher, mask, w, labels=torch.tensor([[2]]))
    assert float(terms["hard"]) == pytest.approx(log_z - 1.5, rel=1e-6)  # CE against the teacher's top-1 (id 3)
    assert float(terms["ce"]) == pytest.approx(log_z - 2.0, rel=1e-6)  # CE against the next token (id 2)
    total = 0.5 * float(terms["kl"]) + 2.0 * float(terms["hard"]) + 3.0 * float(terms["ce"])
    assert float(terms["loss"]) == pytest.approx(total, rel=1e-6)


def test_only_candidates_get_a_gradient_and_an_empty_mask_gives_zero() -> None:
    student = torch.randn(2, 3, 7, requires_grad=True)
    idx = torch.tensor([[[1, 2]] * 3] * 2)
    teacher = torch.randn(2, 3, 2)
    mask = torch.tensor([[True, False, True], [False, False, False]])
    kd_loss(student, idx, teacher, mask, KDWeights())["loss"].backward()
    grad = student.grad
    assert grad[..., [0, 3, 4, 5, 6]].abs().sum() == 0 and grad[0, [0, 2]][:, [1, 2]].abs().sum() > 0
    assert grad[0, 1].abs().sum() == 0 and grad[1].abs().sum() == 0  # masked positions
    empty = kd_loss(student, idx, teacher, torch.zeros(2, 3, dtype=torch.bool), KDWeights())
    assert float(empty["loss"].detach()) == 0.0 and empty["loss"].requires_grad


def test_equal_distributions_have_zero_kl_and_full_agreement() -> None:
    logits = torch.randn(1, 4, 9)
    top = logits.topk(4, dim=-1)
    terms = kd_loss(logits, top.indices, top.values, torch.ones(1, 4, dtype=torch.bool), KDWeights(temperature=3.0))
    assert float(terms["kl"]) == pytest.approx(0.0, abs=1e-6) and float(terms["top1_agreement"]) == 1.0
