"""`python -m runner ls {schemes,selectors,allocators,datasets,runs}`: names read from the plug-in families
(so this list cannot go stale), or the runs in runs/registry.json."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from qc2c.eval.datasets import DATASETS
from qc2c.kv.budget import ALLOCATORS
from qc2c.kv.quant import SCHEMES
from qc2c.kv.selection import SELECTORS
from runner.exitcodes import EXIT_BAD_INPUT, EXIT_OK
from runner.plan import default_runs_dir
from runner.registry import Registry, RegistryError

FAMILIES = {"schemes": SCHEMES, "selectors": SELECTORS, "allocators": ALLOCATORS, "datasets": DATASETS}
EPILOG = """examples:
  python -m runner ls schemes       # values allowed in kv.quant.scheme, kv.precision and kv.budget.candidates
  python -m runner ls selectors     # values allowed in kv.selection.method
  python -m runner ls datasets      # values allowed in eval.datasets
  python -m runner ls runs          # run key, status, manifest and folder of every registered run
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ls",
        help="list plug-in names (schemes, selectors, allocators, datasets) or registered runs",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("what", choices=[*sorted(FAMILIES), "runs"], help="what to list")
    parser.add_argument("--runs-dir", type=Path, default=None, help="runs folder (default: runs/ or $QC2C_RUNS_DIR)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.what != "runs":
        for name in FAMILIES[args.what].names():
            print(name)
        return EXIT_OK
    try:
        entries = Registry(args.runs_dir or default_runs_dir()).entries()
    except RegistryError as exc:
        print(exc, file=sys.stderr)
        return EXIT_BAD_INPUT
    for entry in entries:
        print(f"{entry.key[:10]}\t{entry.status}\t{entry.manifest or '-'}\t{entry.run_dir or '-'}")
    return EXIT_OK
