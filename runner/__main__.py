"""`python -m runner` — run · validate · plan · ls · registry · golden · image.

Each subcommand lives in its own module under runner/cli/ and exposes `add_parser(subparsers)`;
this file only wires them together and owns the exit codes.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from runner.exitcodes import EXIT_BAD_INPUT

SUBCOMMANDS = ("validate", "ls", "run", "plan", "registry", "golden", "image")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m runner", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"runner.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"runner.cli.{name}":
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
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
