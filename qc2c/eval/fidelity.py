"""How closely a compressed setting reproduces a reference setting (C2C with the fp16 message), per item.

Accuracy alone hides compensating errors: a setting can keep accuracy while changing many answers. Two
measures over the same items, in the same order:

* flip rate: the fraction of items whose predicted option differs from the reference prediction (a missing
  prediction, ``None``, counts as an answer of its own, so "answered" vs "no answer" is a flip);
* mean KL(reference ‖ setting) in nats over the option distributions of the logits protocol
  (`RowScore.option_probs`, label → probability). Items where either side has no distribution (the generate
  protocol, or a failed row) are left out of the mean and the count of items used is reported. A zero
  probability in the setting where the reference has mass gives an infinite KL; it is reported as such, not
  clamped, because it means the setting ruled out the reference's answer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Fidelity:
    n: int
    n_flips: int
    flip_rate: float
    mean_kl: float | None  # None when no item has both distributions
    n_kl: int  # items that entered mean_kl


def flip_rate(reference: Sequence[str | None], setting: Sequence[str | None]) -> tuple[int, float]:
    """(number of flipped answers, fraction flipped)."""
    _check_lengths(reference, setting)
    n_flips = sum(r != s for r, s in zip(reference, setting))
    return n_flips, n_flips / len(reference)


def kl_divergence(reference: Mapping[str, float], setting: Mapping[str, float]) -> float:
    """KL(reference ‖ setting) = Σ p log(p / q) in nats over the same option labels; terms with p = 0 are 0."""
    if set(reference) != set(setting):
        raise ValueError(f"option labels differ: {sorted(reference)} vs {sorted(setting)}")
    total = 0.0
    for label, p in reference.items():
        q = setting[label]
        if p < 0 or q < 0:
            raise ValueError(f"negative probability for option {label!r}")
        if p == 0:
            continue
        if q == 0:
            return math.inf
        total += p * math.log(p / q)
    return max(total, 0.0)  # rounding can give -1e-17 for identical distributions


def mean_kl(
    reference: Sequence[Mapping[str, float] | None], setting: Sequence[Mapping[str, float] | None]
) -> tuple[float | None, int]:
    """(mean KL over items where both distributions exist, number of such items)."""
    _check_lengths(reference, setting)
    values = [kl_divergence(r, s) for r, s in zip(reference, setting) if r is not None and s is not None]
    return (math.fsum(values) / len(values) if values else None), len(values)


def fidelity(
    reference_preds: Sequence[str | None],
    setting_preds: Sequence[str | None],
    reference_probs: Sequence[Mapping[str, float] | None] | None = None,
    setting_probs: Sequence[Mapping[str, float] | None] | None = None,
) -> Fidelity:
    """Flip rate and mean KL of a setting against the reference, items paired by position."""
    n_flips, rate = flip_rate(reference_preds, setting_preds)
    if (reference_probs is None) != (setting_probs is None):
        raise ValueError("give option distributions for both the reference and the setting, or for neither")
    kl, n_kl = (None, 0)
    if reference_probs is not None and setting_probs is not None:
        _check_lengths(reference_preds, reference_probs)
        kl, n_kl = mean_kl(reference_probs, setting_probs)
    return Fidelity(n=len(reference_preds), n_flips=n_flips, flip_rate=rate, mean_kl=kl, n_kl=n_kl)


def _check_lengths(reference: Sequence, setting: Sequence) -> None:
    if len(reference) == 0:
        raise ValueError("no samples: fidelity over zero items is undefined")
    if len(reference) != len(setting):
        raise ValueError(f"reference and setting differ in length: {len(reference)} vs {len(setting)}")
