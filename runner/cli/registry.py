"""`python -m runner registry list|invalidate`: the run registry runs/registry.json.

`invalidate KEY --why TEXT` marks a run invalid (a complete run is only ever taken back this way); the next
`runner run` of its manifest starts from scratch, with the old run folder moved to .superseded/.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from runner.exitcodes import EXIT_BAD_INPUT, EXIT_OK
from runner.plan import default_runs_dir
from runner.registry import Registry, RegistryError

EPILOG = """examples:
  python -m runner registry list
  python -m runner registry list --json
  python -m runner registry invalidate 3f2a9c01de --why "fuser folder had no final/"
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "registry",
        help="list or invalidate runs in runs/registry.json",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs-dir", type=Path, default=None)
    sub = parser.add_subparsers(dest="action", required=True)
    ls = sub.add_parser("list", help="every run key with status, manifest and folder")
    ls.add_argument("--json", action="store_true")
    inv = sub.add_parser("invalidate", help="mark a run invalid (with a reason)")
    inv.add_argument("key", help="run key or a unique prefix of it")
    inv.add_argument("--why", required=True, help="the reason, stored in the registry")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    registry = Registry(args.runs_dir or default_runs_dir())
    try:
        if args.action == "list":
            entries = registry.entries()
            if args.json:
                print(json.dumps({e.key: e.raw for e in entries}, indent=2, sort_keys=True))
            for e in [] if args.json else entries:
                why = f"  ({e.reason})" if e.reason else ""
                print(f"{e.key[:10]}  {e.status:<9} {e.manifest or '-':<24} {e.run_dir or '-'}{why}")
            return EXIT_OK
        entry = registry.invalidate(registry.resolve_key(args.key), args.why)
        print(f"{entry.key[:10]}: invalid ({entry.reason})")
        return EXIT_OK
    except RegistryError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_BAD_INPUT
