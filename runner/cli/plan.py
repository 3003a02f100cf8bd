"""`python -m runner plan MANIFEST`: a dry run — run key, run folder, registry decision, fuser resolution
and preflight (both models resolvable here, the fuser loaded strictly and checked against the pair's configs
and tokenizers; no weights are loaded, nothing is scored or written).

Exit codes: 0 the run can start (or is complete); 1 a preflight problem; 2 a bad manifest.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from runner.cli.manifests import ALLOW_DOWNLOADS_HELP, find_manifest, load_manifests_or_report
from runner.exitcodes import EXIT_BAD_INPUT, EXIT_OK, EXIT_RUN_FAILED
from runner.plan import make_plan
from runner.preflight import offline_unless, preflight_report

EPILOG = """examples:
  python -m runner plan manifests/smoke.yaml
  python -m runner plan manifests/m7_align1.yaml --json      # {"run_key", "run_dir", "decision", "problems"}
  python -m runner plan manifests/smoke.yaml --no-preflight  # do not load models
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="dry run: run key, run folder, registry decision, preflight",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("manifest", type=Path, metavar="MANIFEST")
    parser.add_argument("--json", action="store_true", help="print one JSON object per manifest")
    parser.add_argument("--no-preflight", action="store_true", help="skip the model and fuser checks")
    parser.add_argument("--runs-dir", type=Path, default=None)
    parser.add_argument("--allow-downloads", action="store_true", help=ALLOW_DOWNLOADS_HELP)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    offline_unless(args.allow_downloads)
    args.manifest = find_manifest(args.manifest)
    manifests = load_manifests_or_report(args.manifest)
    if manifests is None:
        return EXIT_BAD_INPUT
    worst = EXIT_OK
    for manifest in manifests:
        plan = make_plan(manifest, source=args.manifest, runs_dir=args.runs_dir)
        warnings: list[str] = []
        if not args.no_preflight and plan.decision != "skip":
            problems, warnings = preflight_report(plan)
            plan.problems += problems
        if args.json:
            print(json.dumps(plan.to_json(), sort_keys=True))
        else:
            print(
                f"{manifest.name}: run_key {plan.run_key}\n  run folder: {plan.run_dir}\n"
                f"  decision:   {plan.decision} ({plan.reason})\n  settings:   {', '.join(plan.settings)}\n"
                f"  fuser:      {plan.fuser_source or '-'}"
            )
            for problem in plan.problems:
                print(f"{args.manifest}: {problem}", file=sys.stderr)
            for warning in warnings:
                print(f"{args.manifest}: warning: {warning}", file=sys.stderr)
        if plan.problems:
            worst = EXIT_RUN_FAILED
    return worst
