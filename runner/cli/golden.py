"""`python -m runner golden {merge,check,summary,plots,show}`: the validated golden store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runner import fsio
from runner.exitcodes import EXIT_BAD_INPUT, EXIT_OK
from runner.golden.merge import (
    GOLDEN_JSON,
    SUMMARY_MD,
    GoldenFileError,
    check_golden,
    discover_complete_runs,
    load_golden,
    merge_runs,
)
from runner.golden.show import show
from runner.golden.summary import render_summary
from runner.golden.validate import GoldenFile

REPO_ROOT = Path(__file__).resolve().parents[2]
EPILOG = """examples:
  python -m runner golden merge runs/smoke/smoke-1a2b3c4d5e
  python -m runner golden merge --all                     # every complete run under runs/ (make golden)
  python -m runner golden merge RUN --allow dirty         # deliberate exception, recorded in the row
  python -m runner golden check
  python -m runner golden show --milestone m2
  python -m runner golden plots                           # make plots
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "golden",
        help="merge runs into golden/, check it, render summary/plots/table",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    merge = _verb(verbs, "merge", "validate run folders and merge their results into golden_runs.json")
    merge.add_argument("run_dirs", nargs="*", type=Path, metavar="RUN_DIR", help="runs/<milestone>/<run_tag>/")
    merge.add_argument(
        "--all", action="store_true", help="every run under --runs-dir whose registry status is complete"
    )
    merge.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="RULE",
        help="waive a rule (dirty, errors, partial, bytes or the rule name); recorded in the row",
    )
    merge.add_argument("--replace", action="store_true", help="a conflicting row replaces the existing one")
    merge.add_argument("--no-plots", action="store_true", help="skip regenerating plots/*.png")
    merge.set_defaults(func=_merge)
    _verb(verbs, "check", "validate the whole golden_runs.json").set_defaults(func=_check)
    _verb(verbs, "summary", "regenerate golden_summary.md").set_defaults(func=_summary)
    _verb(verbs, "plots", "regenerate plots/*.png").set_defaults(func=_plots)
    show = _verb(verbs, "show", "print the golden rows as a table")
    show.add_argument("--milestone", help="only this milestone (e.g. m2)")
    show.set_defaults(func=_show)


def _verb(verbs: argparse._SubParsersAction, name: str, help_text: str) -> argparse.ArgumentParser:
    sub = verbs.add_parser(
        name, help=help_text, description=help_text, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub.add_argument("--golden-dir", type=Path, default=REPO_ROOT / "golden", help="default: golden/ in the repo")
    sub.add_argument(
        "--runs-dir", type=Path, default=None, help="folder with registry.json (default: runs/ in the repo)"
    )
    return sub


def _fail(problems: list[str]) -> int:
    for line in problems:
        print(line, file=sys.stderr)
    return EXIT_BAD_INPUT


def _merge(args: argparse.Namespace) -> int:
    run_dirs = list(args.run_dirs)
    runs_dir = args.runs_dir
    if args.all:
        found, notes = discover_complete_runs(runs_dir or REPO_ROOT / "runs")
        for note in notes:
            print(note, file=sys.stderr)
        run_dirs += found
    if not run_dirs:
        if args.all:
            print("golden merge: no complete runs to merge", file=sys.stderr)
            return EXIT_OK
        return _fail(["golden merge: give RUN_DIR... or --all"])
    missing = [f"{d}: run folder not found" for d in run_dirs if not d.is_dir()]
    if missing:
        return _fail(missing)
    report = merge_runs(run_dirs, args.golden_dir, args.allow, args.replace, runs_dir=runs_dir, plots=not args.no_plots)
    if not report.ok:
        return _fail(report.problems + ["golden merge: refused, nothing written"])
    for note in report.notes:
        print(f"replaced: {note}", file=sys.stderr)
    print(
        f"golden merge: {len(report.added)} added, {len(report.replaced)} replaced, "
        f"{len(report.unchanged)} unchanged -> {args.golden_dir}"
    )
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    unverified: list[str] = []
    problems = check_golden(args.golden_dir, unverified)
    for line in unverified:
        print(f"golden check: not verified against its run folder: {line}", file=sys.stderr)
    if problems:
        return _fail(problems)
    note = f" ({len(unverified)} row(s) not verified: run folder absent)" if unverified else ""
    print(f"golden check: {args.golden_dir / GOLDEN_JSON} is valid{note}")
    return EXIT_OK


def _load(args: argparse.Namespace) -> tuple[GoldenFile | None, list[str]]:
    try:
        return load_golden(args.golden_dir / GOLDEN_JSON), []
    except GoldenFileError as exc:
        return None, exc.problems


def _summary(args: argparse.Namespace) -> int:
    golden, problems = _load(args)
    if problems:
        return _fail(problems)
    fsio.atomic_write(args.golden_dir / SUMMARY_MD, render_summary(golden))
    print(f"wrote {args.golden_dir / SUMMARY_MD}")
    return EXIT_OK


def _plots(args: argparse.Namespace) -> int:
    from runner.golden.plots import write_plots  # deferred: it loads matplotlib, which only plots need

    golden, problems = _load(args)
    if problems:
        return _fail(problems)
    for path in write_plots(golden, args.golden_dir / "plots"):
        print(f"wrote {path}")
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    golden, problems = _load(args)
    if problems:
        return _fail(problems)
    show(golden, args.milestone)
    return EXIT_OK
