"""`python -m runner demo-zoo [--out DIR] [--reduced]`: rebuild the demo zoo (runner/demo_zoo.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from qc2c.demo.zoo import SHIPPED
from runner.demo_zoo import build_zoo
from runner.exitcodes import EXIT_OK


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo-zoo",
        help="rebuild the demo world, models and fusers (make demo-zoo)",
        description="World data -> three pretrained models -> three fusers trained by `runner run` -> SHA256SUMS. "
        "Seeded and deterministic on CPU; about an hour on 2 cores.",
    )
    p.add_argument(
        "--out", type=Path, default=None, help="zoo folder to (re)build (default: the shipped qc2c/demo/zoo)"
    )
    p.add_argument("--reduced", action="store_true", help="a small world and a few steps (tests), never shipped")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    build_zoo(args.out or SHIPPED, reduced=args.reduced)
    return EXIT_OK
