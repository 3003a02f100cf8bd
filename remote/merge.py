"""Golden merge of what `pull` brought back: hands every pulled, complete run folder to runner.golden."""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

from remote import ledger
from remote.targets import Target
from runner.exitcodes import EXIT_BAD_INPUT, EXIT_OK, EXIT_RUN_FAILED


def merge(target: Target, *, job: str | None, ledger_path: Path, repo: Path) -> int:
    entries = ledger.select(ledger.load_entries(ledger_path), target.name, job)
    run_dirs = [repo / d for e in entries for d in e.pulled]
    if not run_dirs:
        print(f"{target.name}: nothing pulled yet (run `remote pull` first)", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        golden = importlib.import_module("runner.golden.merge")
    except ModuleNotFoundError:
        print("runner.golden.merge is not available in this checkout", file=sys.stderr)
        return EXIT_RUN_FAILED
    rc = EXIT_OK
    for run_dir in run_dirs:
        try:
            print(f"{run_dir}: {_merge_one(golden, run_dir, repo)}")
        except Exception as exc:  # one bad run does not hide the others; each is reported
            print(f"{run_dir}: merge failed: {exc}", file=sys.stderr)
            rc = EXIT_RUN_FAILED
    return rc


def _merge_one(golden, run_dir: Path, repo: Path) -> object:
    """Call the public merge function of runner.golden.merge with the run folder (and golden dir if asked)."""
    for name in ("merge_run", "merge_run_dir", "merge_golden", "merge"):
        func = getattr(golden, name, None)
        if callable(func):
            params = inspect.signature(func).parameters
            kwargs = {}
            if "golden_dir" in params:
                kwargs["golden_dir"] = repo / "golden"
            return func(run_dir, **kwargs)
    raise RuntimeError("runner.golden.merge has no merge_run/merge_golden function")
