"""Subcommands of python -m runner, one module each (add_parser(subparsers) → func(args) -> exit code).

Every subcommand module is imported to build the parser, before any command has run `offline_unless`, and
Hugging Face libraries read their offline switches when first imported. So these modules import at the top
only what imports no Hugging Face library, and defer the rest (runner.execute; runner.golden.plots, which
loads matplotlib) into the command that needs it; tests/runner/test_plan.py checks the parser imports none.
"""
