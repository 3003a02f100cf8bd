"""Golden merge of what `pull` brought back: runner.golden.merge.merge_runs on the pulled, complete runs.

The run registry that vouches for those runs lives on the far side; `pull` keeps a snapshot of it in
runs/remote/<target>/registry.json, which is handed to the merge as `runs_dir`, so the "run is complete"
rule checks what the far side recorded rather than being skipped.
"""

from __future__ import annotations

import sys
from pathlib import Path

from remote import ledger
from remote.targets import Target
from runner.exitcodes import EXIT_BAD_INPUT, EXIT_OK, EXIT_RUN_FAILED


def registry_snapshot_dir(repo: Path, target: Target) -> Path:
    return repo / "runs" / "remote" / target.name


def merge(target: Target, *, job: str | None, ledger_path: Path, repo: Path, allow: list[str] | None = None) -> int:
    from runner.golden.merge import merge_runs

    entries = ledger.select(ledger.load_entries(ledger_path), target.name, job)
    run_dirs = [repo / d for e in entries for d in e.pulled]
    if not run_dirs:
        print(f"{target.name}: nothing pulled yet (run `remote pull` first)", file=sys.stderr)
        return EXIT_BAD_INPUT
    report = merge_runs(run_dirs, repo / "golden", allow or [], runs_dir=registry_snapshot_dir(repo, target))
    for line in report.notes:
        print(line)
    if report.problems:
        for line in report.problems:
            print(line, file=sys.stderr)
        print(f"{target.name}: golden merge refused, nothing written", file=sys.stderr)
        return EXIT_RUN_FAILED
    print(
        f"{target.name}: golden merge: {len(report.added)} added, {len(report.replaced)} replaced, "
        f"{len(report.unchanged)} unchanged from {len(run_dirs)} run(s)"
    )
    return EXIT_OK
