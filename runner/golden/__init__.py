"""The golden store: validated rows in golden/golden_runs.json, a generated summary and budget-curve plots.

Public: `merge_runs`, `check_golden`, `load_golden`, `GoldenRow`, `RULES` (plots import matplotlib lazily).
"""

from runner.golden.merge import GoldenFileError, MergeReport, check_golden, load_golden, merge_runs
from runner.golden.validate import RULES, GoldenFile, GoldenRow

__all__ = [
    "RULES",
    "GoldenFile",
    "GoldenFileError",
    "GoldenRow",
    "MergeReport",
    "check_golden",
    "load_golden",
    "merge_runs",
]
