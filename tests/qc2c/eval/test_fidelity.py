"""Fidelity vs a reference setting: answer flip rate and mean KL(reference || setting).

python -m pytest tests/qc2c/eval/test_fidelity.py -q
"""

from __future__ import annotations

import math

import pytest
import torch

from qc2c.eval.fidelity import fidelity, flip_rate, kl_divergence, mean_kl


def _kl_by_torch(p: dict[str, float], q: dict[str, float]) -> float:
    labels = sorted(p)
    pt = torch.tensor([p[k] for k in labels], dtype=torch.float64)
    qt = torch.tensor([q[k] for k in labels], dtype=torch.float64)
    return float(torch.nn.functional.kl_div(qt.log(), pt, reduction="sum"))


def test_flip_rate_counts_changed_answers_and_missing_ones():
    reference = ["A", "B", "C", "D", "A", None]
    setting = ["A", "C", "C", None, "B", None]
    assert flip_rate(reference, setting) == (3, 0.5)
    assert flip_rate(reference, reference) == (0, 0.0)


@pytest.mark.parametrize(
    ("p", "q"),
    [
        ({"A": 0.5, "B": 0.5}, {"A": 0.9, "B": 0.1}),
        ({"A": 0.7, "B": 0.1, "C": 0.1, "D": 0.1}, {"A": 0.25, "B": 0.25, "C": 0.25, "D": 0.25}),
        ({"A": 0.01, "B": 0.02, "C": 0.03, "D": 0.94}, {"A": 0.4, "B": 0.3, "C": 0.2, "D": 0.1}),
    ],
)
def test_kl_matches_torch_kl_div(p, q):
    assert kl_divergence(p, q) == pytest.approx(_kl_by_torch(p, q), rel=1e-12)


def test_kl_closed_form_and_identity():
    # KL((½,½) || (0.9,0.1)) = ½ ln(0.5/0.9) + ½ ln(0.5/0.1) = ½ ln(25/9)
    assert kl_divergence({"A": 0.5, "B": 0.5}, {"A": 0.9, "B": 0.1}) == pytest.approx(0.5 * math.log(25 / 9))
    p = {"A": 0.1, "B": 0.2, "C": 0.3, "D": 0.4}
    assert kl_divergence(p, dict(p)) == 0.0


def test_kl_zero_terms_and_ruled_out_answers():
    assert kl_divergence({"A": 1.0, "B": 0.0}, {"A": 0.5, "B": 0.5}) == pytest.approx(math.log(2))
    assert kl_divergence({"A": 0.5, "B": 0.5}, {"A": 1.0, "B": 0.0}) == math.inf


def test_kl_refuses_different_labels():
    with pytest.raises(ValueError, match="option labels differ"):
        kl_divergence({"A": 1.0}, {"B": 1.0})


def test_mean_kl_skips_items_without_distributions():
    p1, q1 = {"A": 0.6, "B": 0.4}, {"A": 0.3, "B": 0.7}
    p2, q2 = {"A": 0.2, "B": 0.8}, {"A": 0.25, "B": 0.75}
    value, n_used = mean_kl([p1, None, p2], [q1, {"A": 1.0, "B": 0.0}, q2])
    assert n_used == 2
    assert value == pytest.approx((_kl_by_torch(p1, q1) + _kl_by_torch(p2, q2)) / 2, rel=1e-12)
    assert mean_kl([None], [None]) == (None, 0)


def test_fidelity_of_the_reference_against_itself():
    preds = ["A", "B", "D"]
    probs = [{"A": 0.5, "B": 0.5}, {"A": 0.1, "B": 0.9}, {"D": 1.0}]
    result = fidelity(preds, preds, probs, probs)
    assert (result.n, result.n_flips, result.flip_rate, result.mean_kl, result.n_kl) == (3, 0, 0.0, 0.0, 3)


def test_fidelity_generate_protocol_has_no_kl():
    result = fidelity(["A", "B"], ["A", "C"])
    assert result.flip_rate == 0.5 and result.mean_kl is None and result.n_kl == 0


@pytest.mark.parametrize(
    "call",
    [
        lambda: fidelity([], []),
        lambda: fidelity(["A"], ["A", "B"]),
        lambda: fidelity(["A"], ["A"], [{"A": 1.0}], None),
        lambda: fidelity(["A", "B"], ["A", "B"], [{"A": 1.0}], [{"A": 1.0}]),
    ],
)
def test_bad_input_is_refused(call):
    with pytest.raises(ValueError):
        call()
