"""`python -m runner run MANIFEST`: validate → plan → preflight → container decision → execute → results.

A sweep file runs every expanded manifest (complete ones are skipped) and prints one summary table; its grid
points that differ only in `kv` run as one group in this process (runner.sweep_exec), each with its own run
key, folder, registry entry and results, exactly as if run alone (--one-by-one: one after another).
Exit codes (runner/exitcodes.py): 0 complete (or already complete); 1 the run failed (sample errors above
runtime.max_sample_errors, preflight refusal such as a model missing from an offline HF cache or a fuser
that does not fit the pair, a from_run without a complete run, runtime.container: docker asked for but
unusable); 2 bad manifest or arguments; 3 already running: another live process owns the run (the claim is
one locked compare-and-set in runs/registry.json, so two copies never run together; nothing was written);
75 preempted by SIGTERM / SIGINT / SIGUSR1 / SIGHUP (progress flushed; run the same command again to resume).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from runner.cli.manifests import ALLOW_DOWNLOADS_HELP, find_manifest, load_manifests_or_report
from runner.container import ContainerError, choose_runtime, container_provenance, run_in_container
from runner.exitcodes import EXIT_ALREADY_RUNNING, EXIT_BAD_INPUT, EXIT_OK, EXIT_PREEMPTED, EXIT_RUN_FAILED
from runner.lifecycle import StopFlag
from runner.plan import Plan, make_plan
from runner.preflight import offline_unless
from runner.progress_ui import ProgressUI, print_table, results_table, subjects_table, sweep_table
from runner.schema import Manifest
from runner.summarize import read_results

EPILOG = """examples:
  python -m runner run manifests/smoke.yaml                  # make run
  python -m runner run m7_align1                             # a bare name: manifests/ or manifests/sweeps/
  python -m runner run manifests/m2_int4.yaml --container native
  python -m runner run manifests/sweeps/m2_schemes.yaml      # every member; complete ones are skipped
  QC2C_RUNS_DIR=/scratch/runs python -m runner run manifests/smoke.yaml
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a manifest or a sweep (resumes partial runs, skips complete ones)",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("manifest", type=Path, metavar="MANIFEST", help="manifest or sweep YAML file")
    parser.add_argument(
        "--container",
        choices=("auto", "docker", "native"),
        default=None,
        help="where to execute (default: the manifest's runtime.container)",
    )
    parser.add_argument("--runs-dir", type=Path, default=None, help="runs folder (default: runs/ or $QC2C_RUNS_DIR)")
    parser.add_argument("--allow-downloads", action="store_true", help=ALLOW_DOWNLOADS_HELP)
    parser.add_argument(
        "--one-by-one",
        action="store_true",
        help="run a sweep's grid points one after another (default: points that differ only in kv share one process)",
    )
    parser.set_defaults(func=run)


def container_decision(requested: str, device: str) -> tuple[str, str]:
    """(runtime, reason); raises runner.container.ContainerError when docker was asked for and cannot be used."""
    decision = choose_runtime(requested, device=device)
    return decision.runtime, decision.reason


def container_info(runtime: str, reason: str) -> dict[str, Any]:
    """What provenance records about the container: inside the image, what the container hook passed in
    (runner.container.container_provenance); outside it, no image."""
    native = {"runtime": runtime, "image": None, "image_id": None, "image_digest": None}
    return {**(container_provenance() or native), "reason": reason}


def run(args: argparse.Namespace) -> int:
    offline_unless(args.allow_downloads)
    args.manifest = find_manifest(args.manifest)
    manifests = load_manifests_or_report(args.manifest)
    if manifests is None:
        return EXIT_BAD_INPUT
    requested = args.container or manifests[0].runtime.container
    try:
        runtime, reason = container_decision(requested, manifests[0].runtime.device)
        print(f"runtime: {runtime} ({reason})", file=sys.stderr)
        if runtime == "docker":
            return run_in_container(args.manifest, ["run", str(args.manifest), "--container", "native"])
    except ContainerError as exc:
        print(f"{args.manifest}: runtime.container: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED
    return run_native(
        args.manifest,
        manifests,
        runs_dir=args.runs_dir,
        container=container_info(runtime, reason),
        grouped=not args.one_by_one,
    )


def run_native(
    source: Path, manifests: list[Manifest], *, runs_dir: Path | None, container: dict[str, Any], grouped: bool = True
) -> int:
    """Run every manifest of `source`. A sweep's grid points that differ only in `kv` run as one group in this
    process (runner.sweep_exec: models loaded and baselines scored once, one prefill per model and batch);
    `grouped=False` runs them one after another, each loading its own models. A stop signal, even one that
    arrives between runs or while a run is finishing, starts no further run (exit 75: run again to continue)."""
    from runner.sweep_exec import group_plans

    plans, rows = [], []
    for manifest in manifests:
        plan = make_plan(manifest, source=source if len(manifests) == 1 else None, runs_dir=runs_dir)
        plans.append(plan)
        rows.append({"name": manifest.name, "decision": plan.decision, "run_dir": str(plan.run_dir), "exit": EXIT_OK})
        print(f"{manifest.name}: {plan.decision} ({plan.reason}) -> {plan.run_dir}", file=sys.stderr)
        if manifest.kind == "bench":
            plan.problems.append("kind: bench manifests are not run by `runner run` (use: python -m qc2c.bench ...)")
    row_of = {id(plan): row for plan, row in zip(plans, rows, strict=True)}
    groups = group_plans(plans) if grouped else [[plan] for plan in plans]
    StopFlag.received, between = None, StopFlag()
    between.install()  # between runs a stop signal is remembered instead of killing the process
    try:
        worst, all_results = _run_groups(source, groups, row_of, container)
    finally:
        between.restore()
    if worst == EXIT_PREEMPTED:
        return EXIT_PREEMPTED
    if all_results:
        print_table(results_table(f"results ({source})", all_results))
        per_subject = subjects_table(all_results)
        if per_subject is not None:
            print_table(per_subject)
    if len(manifests) > 1:
        print_table(sweep_table(rows))
    return worst


def _run_groups(
    source: Path, groups: list[list[Plan]], row_of: dict[int, dict[str, Any]], container: dict[str, Any]
) -> tuple[int, list[Any]]:
    """Run the groups in order; (worst exit code, results of the complete runs)."""
    from runner.execute import run_plan  # deferred: it imports transformers (see runner/cli/__init__.py)
    from runner.sweep_exec import run_group

    all_results, worst = [], EXIT_OK
    for group in groups:
        if StopFlag.received is not None:
            print(f"{source}: stop signal received: no further run started (run it again to continue)", file=sys.stderr)
            return EXIT_PREEMPTED, all_results
        todo = [plan for plan in group if not _refused(source, plan, row_of[id(plan)])]
        if len(todo) > 1:
            print(f"sweep group: {len(todo)} grid points scored together in this process", file=sys.stderr)
            exits = run_group(todo, container=container, ui=ProgressUI())
            for plan in todo:
                row_of[id(plan)]["exit"] = exits[plan.run_key]
        elif todo:
            row_of[id(todo[0])]["exit"] = run_plan(todo[0], container=container, ui=ProgressUI())
        for plan in group:
            row = row_of[id(plan)]
            if row["exit"] == EXIT_RUN_FAILED and not plan.problems:
                print(f"{plan.run_dir}: run failed: see {plan.run_dir / 'logs' / 'run.log'}", file=sys.stderr)
            if row["exit"] == EXIT_OK:
                results = read_results(plan.run_dir)
                all_results += results
                row["results"] = results
            worst = max(worst, row["exit"])
        if any(row_of[id(plan)]["exit"] == EXIT_PREEMPTED for plan in group):
            return EXIT_PREEMPTED, all_results  # the job is being stopped: do not start the next group
    return worst, all_results


def _refused(source: Path, plan: Plan, row: dict[str, Any]) -> bool:
    """Whether the plan does not run here (problems, another process owns it, already complete); sets its exit."""
    if plan.problems:
        for problem in plan.problems:
            print(f"{source}: {problem}", file=sys.stderr)
        row["exit"] = EXIT_RUN_FAILED
        return True
    if plan.decision == "busy":
        print(f"{plan.run_dir}: already running ({plan.reason}); not started twice", file=sys.stderr)
        row["exit"] = EXIT_ALREADY_RUNNING
        return True
    return plan.decision == "skip"
