"""`python -m runner golden show`: the golden rows as a rich table in the terminal (humans only).

Wide terminals get one column per field. Below NARROW_COLUMNS the table folds run, setting and dataset
into one two-line cell and shows accuracy as value ± CI half-width, without p and ratio (which the note
under the title says, with where to read them), so that every number stays whole at 80 columns.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from runner.golden.summary import _dedupe, _order
from runner.golden.validate import GoldenFile
from runner.results import COMPRESSED

NARROW_COLUMNS = 120


def build_table(golden: GoldenFile, milestone: str | None = None, width: int = 200) -> Table:
    """Same rows and order as golden_summary.md, optionally one milestone, laid out for `width` columns."""
    narrow = width < NARROW_COLUMNS
    title = "golden runs" + (f" · {milestone}" if milestone else "")
    if narrow:
        title += "\n(narrow terminal: p and ratio left out; see golden/golden_summary.md)"
    table = Table(title=title, show_lines=narrow)
    if narrow:
        table.add_column("run · setting · dataset", overflow="fold")
        numbers = ("accuracy ± CI", "Δ c2c", "bytes", "n")
    else:
        for name in ("run", "setting", "dataset") if milestone else ("milestone", "run", "setting", "dataset"):
            table.add_column(name, overflow="fold")
        numbers = ("accuracy (95% CI)", "Δ c2c_fp16", "p", "bytes", "ratio", "n")
    for name in numbers:
        table.add_column(name, justify="right", no_wrap=True)
    rows = [r for r in golden.rows.values() if milestone is None or r.milestone == milestone]
    for row, repeats in _dedupe(sorted(rows, key=lambda r: (r.milestone, *_order(r)))):
        table.add_row(*_cells(row, repeats, milestone, narrow), style="bold" if row.setting == COMPRESSED else "dim")
    return table


def _cells(row, repeats: int, milestone: str | None, narrow: bool) -> list[str]:
    m = row.metrics
    paired = m.paired.get("c2c_fp16")
    run = row.manifest + (f" (+{repeats - 1})" if repeats > 1 else "")
    oracle = " (oracle)" if row.metrics.oracle else ""  # marked like the summary's oracle selections
    setting = row.family + oracle if row.setting == COMPRESSED else row.setting
    delta = f"{paired.diff:+.3f}" if paired else ("ref" if row.setting == "c2c_fp16" else "—")
    nbytes = f"{m.bytes.mean:,.0f}" if m.bytes else "—"
    n = f"{m.n}/{row.dataset.n_expected}"
    if narrow:
        where = f"{row.milestone} · {run}" if milestone is None else run
        accuracy = f"{m.accuracy:.3f} ± {(m.ci95[1] - m.ci95[0]) / 2:.2f}"
        return [f"{where}\n{setting} · {row.dataset.name}", accuracy, delta, nbytes, n]
    return [
        *([] if milestone else [row.milestone]),
        run,
        setting,
        row.dataset.name,
        f"{m.accuracy:.3f} ({m.ci95[0]:.2f}–{m.ci95[1]:.2f})",
        delta,
        f"{paired.mcnemar_p:.2g}" if paired else "—",
        nbytes,
        f"{m.compression_ratio:.1f}×" if m.compression_ratio else "—",
        n,
    ]


def show(golden: GoldenFile, milestone: str | None = None, console: Console | None = None) -> None:
    console = console or Console()
    console.print(build_table(golden, milestone, width=console.width))
