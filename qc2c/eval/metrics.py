"""Accuracy with a confidence interval, paired comparisons of two settings, summary statistics.

Pure functions over per-sample outcomes (numpy and the standard library only), so results files can be
recomputed from progress records. Every function refuses empty input: a rate over zero samples is not a
number a results file should carry.

Choices, with sources:
* Accuracy CI: Wilson score interval (Wilson 1927; recommended over the Wald interval by Brown, Cai and
  DasGupta 2001 and Newcombe 1998 because it stays inside [0, 1] and keeps coverage near 0/n and n/n).
* Paired test: McNemar on the discordant pairs (b = only A correct, c = only B correct). When b + c < 25 the
  exact two-sided binomial test (p = min(1, 2·P[Bin(b+c, ½) ≤ min(b, c)])) is used, because the chi-square
  approximation is poor for small counts (the usual rule of thumb, e.g. statsmodels' `mcnemar` docs);
  otherwise the chi-square statistic with Edwards' continuity correction (|b − c| − 1)² / (b + c), 1 d.f.
* Paired bootstrap of the accuracy difference: resampling items with replacement only changes how many of
  the n items fall in each of the three classes d = a − b ∈ {−1, 0, +1}, so one resample is a multinomial
  draw of those three counts. This is the same distribution as index resampling at O(1) memory per resample.
  Percentile interval, seeded numpy Generator (PCG64).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054  # two-sided 95% standard normal quantile
EXACT_BELOW = 25  # McNemar: exact binomial test when the number of discordant pairs is below this


@dataclass(frozen=True)
class Accuracy:
    n: int
    n_correct: int
    accuracy: float
    ci95: tuple[float, float]


@dataclass(frozen=True)
class McNemar:
    n_only_a: int  # b: A correct, B wrong
    n_only_b: int  # c: A wrong, B correct
    p_value: float
    method: str  # "exact" | "chi2_cc" | "no_discordant_pairs"


@dataclass(frozen=True)
class PairedDiff:
    diff: float  # accuracy(A) - accuracy(B)
    ci95: tuple[float, float]
    n_resamples: int
    seed: int


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    p50: float
    p95: float


def wilson_interval(n_correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for n_correct successes out of n."""
    _require_samples(n)
    if not 0 <= n_correct <= n:
        raise ValueError(f"n_correct must be within 0..{n}, got {n_correct}")
    p = n_correct / n
    denom = 1.0 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low = 0.0 if n_correct == 0 else max(0.0, center - half)
    high = 1.0 if n_correct == n else min(1.0, center + half)
    return low, high


def accuracy(correct: Sequence[bool]) -> Accuracy:
    """Accuracy and its 95% Wilson interval from per-sample outcomes."""
    flags = _flags(correct, "correct")
    n, k = len(flags), int(flags.sum())
    return Accuracy(n=n, n_correct=k, accuracy=k / n, ci95=wilson_interval(k, n))


def mcnemar(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> McNemar:
    """Two-sided McNemar test of A vs B on the same items (see the module docstring for the method)."""
    a, b = _paired(a_correct, b_correct)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    n_discordant = only_a + only_b
    if n_discordant == 0:
        return McNemar(only_a, only_b, 1.0, "no_discordant_pairs")
    if n_discordant < EXACT_BELOW:
        tail = sum(math.comb(n_discordant, i) for i in range(min(only_a, only_b) + 1)) / 2**n_discordant
        return McNemar(only_a, only_b, min(1.0, 2.0 * tail), "exact")
    statistic = (abs(only_a - only_b) - 1) ** 2 / n_discordant
    return McNemar(only_a, only_b, chi2_sf_1df(statistic), "chi2_cc")


def chi2_sf_1df(x: float) -> float:
    """P[X > x] for X ~ chi-square with 1 degree of freedom: X = Z², so P = erfc(sqrt(x / 2))."""
    return math.erfc(math.sqrt(max(x, 0.0) / 2.0))


def paired_bootstrap(
    a_correct: Sequence[bool], b_correct: Sequence[bool], *, n_resamples: int = 10_000, seed: int = 0
) -> PairedDiff:
    """Accuracy difference A − B with a 95% percentile bootstrap interval over items (paired)."""
    a, b = _paired(a_correct, b_correct)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    n = len(a)
    d = a.astype(np.int64) - b.astype(np.int64)
    counts = np.array([(d == 1).sum(), (d == 0).sum(), (d == -1).sum()])
    rng = np.random.Generator(np.random.PCG64(seed))
    draws = rng.multinomial(n, counts / n, size=n_resamples)
    diffs = (draws[:, 0] - draws[:, 2]) / n
    low, high = np.percentile(diffs, [2.5, 97.5])
    return PairedDiff(float(d.mean()), (float(low), float(high)), n_resamples, seed)


def summary(values: Sequence[float]) -> Summary:
    """Mean, median and 95th percentile (linear interpolation between order statistics, numpy's default)."""
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    _require_samples(arr.size)
    if not np.isfinite(arr).all():
        raise ValueError("values contain NaN or infinity")
    p50, p95 = np.percentile(arr, [50, 95])
    return Summary(n=int(arr.size), mean=float(arr.mean()), p50=float(p50), p95=float(p95))


def _require_samples(n: int) -> None:
    if n <= 0:
        raise ValueError("no samples: a metric over zero items is undefined (did every sample fail or get skipped?)")


def _flags(values: Sequence[bool], what: str) -> np.ndarray:
    arr = np.asarray(values)
    _require_samples(arr.size)
    if arr.ndim != 1 or not np.isin(arr, [0, 1]).all():
        raise ValueError(f"{what}: expected a flat sequence of booleans")
    return arr.astype(bool)


def _paired(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    a, b = _flags(a_correct, "a_correct"), _flags(b_correct, "b_correct")
    if a.shape != b.shape:
        raise ValueError(f"paired outcomes differ in length: {a.size} vs {b.size}")
    return a, b
