"""Subcommands of python -m runner, one module each (add_parser(subparsers) → func(args) -> exit code)."""
