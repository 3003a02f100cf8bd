"""`python -m runner ls {schemes,selectors,allocators,datasets}`: the plug-in names, read from the families."""

from __future__ import annotations

import argparse

from qc2c.eval.datasets import DATASETS
from qc2c.kv.budget import ALLOCATORS
from qc2c.kv.quant import SCHEMES
from qc2c.kv.selection import SELECTORS
from runner.exitcodes import EXIT_OK

FAMILIES = {"schemes": SCHEMES, "selectors": SELECTORS, "allocators": ALLOCATORS, "datasets": DATASETS}
EPILOG = """examples:
  python -m runner ls schemes       # values allowed in kv.quant.scheme and kv.precision
  python -m runner ls selectors     # values allowed in kv.selection.method
  python -m runner ls datasets      # values allowed in eval.datasets
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ls",
        help="list plug-in names (schemes, selectors, allocators, datasets)",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("what", choices=sorted(FAMILIES), help="which family to list")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for name in FAMILIES[args.what].names():
        print(name)
    return EXIT_OK
