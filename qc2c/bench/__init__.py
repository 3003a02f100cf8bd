"""Benchmarks: `python -m qc2c.bench {codec,eval,max-batch}` (codec throughput, evaluation speed, largest batch)."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """argparse type for sizes and counts: a zero or negative batch, length or repeat count is refused with the
    usual one-line argparse error (exit 2) instead of failing deep inside a loop or a tensor shape."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value
