"""`python -m runner` — run · validate · plan · ls · registry · golden · image.

Each subcommand lives in its own module under runner/cli/ and exposes `add_parser(subparsers)`;
this file only wires them together and owns the exit codes.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from runner.exitcodes import EXIT_BAD_INPUT, EXIT_RUN_FAILED

SUBCOMMANDS = ("validate", "ls", "run", "plan", "registry", "golden", "image", "demo-zoo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m runner", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"runner.cli.{name.replace('-', '_')}")
        except ModuleNotFoundError as exc:
            if exc.name != f"runner.cli.{name.replace('-', '_')}":
                raise
            sub = subparsers.add_parser(name, help=f"{name} (not implemented yet)")
            sub.set_defaults(func=_not_implemented(name))
            continue
        module.add_parser(subparsers)
    return parser


def _not_implemented(name: str):
    def fail(_args: argparse.Namespace) -> int:
        print(f"runner {name}: not implemented yet", file=sys.stderr)
        return EXIT_BAD_INPUT

    return fail


def main(argv: list[str] | None = None) -> int:
    """Parse and dispatch. The boundary of every subcommand: whatever escapes one becomes one line on stderr,
    never a traceback (QC2C_TRACEBACK=1 shows it): a full disk names the file and the free space (exit 1),
    anything else names the command and the error (exit 2 for bad input met late, 1 otherwise)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except Exception as exc:  # noqa: BLE001 - the CLI boundary
        if os.environ.get("QC2C_TRACEBACK") == "1":
            raise
        print(one_line_error(f"runner {args.command}", exc), file=sys.stderr)
        return EXIT_BAD_INPUT if isinstance(exc, ValueError | RecursionError) else EXIT_RUN_FAILED


def one_line_error(who: str, exc: BaseException) -> str:
    from runner.fsio import disk_full, no_space_line

    if disk_full(exc):
        return no_space_line(exc, Path.cwd())
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{who}: {type(exc).__name__}: {first}"


if __name__ == "__main__":
    sys.exit(main())
