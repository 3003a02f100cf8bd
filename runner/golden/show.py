"""`python -m runner golden show`: the golden rows as a rich table in the terminal (humans only)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from runner.golden.summary import _dedupe, _order
from runner.golden.validate import GoldenFile
from runner.results import COMPRESSED


def build_table(golden: GoldenFile, milestone: str | None = None) -> Table:
    """Same rows and order as golden_summary.md, optionally one milestone."""
    table = Table(title="golden runs" + (f" · {milestone}" if milestone else ""), show_lines=False)
    text_columns = ("run", "setting", "dataset") if milestone else ("milestone", "run", "setting", "dataset")
    for name in text_columns:
        table.add_column(name, overflow="fold")
    for name in ("accuracy (95% CI)", "Δ c2c_fp16", "p", "bytes", "ratio", "n"):
        table.add_column(name, justify="right", no_wrap=True)
    rows = [r for r in golden.rows.values() if milestone is None or r.milestone == milestone]
    for row, repeats in _dedupe(sorted(rows, key=lambda r: (r.milestone, *_order(r)))):
        m = row.metrics
        paired = m.paired.get("c2c_fp16")
        delta = f"{paired.diff:+.3f}" if paired else ("ref" if row.setting == "c2c_fp16" else "—")
        text = [
            row.manifest + (f" (+{repeats - 1})" if repeats > 1 else ""),
            (row.family + (" (oracle)" if row.metrics.oracle else "")) if row.setting == COMPRESSED else row.setting,
            row.dataset.name,
        ]
        table.add_row(
            *([] if milestone else [row.milestone]),
            *text,
            f"{m.accuracy:.3f} ({m.ci95[0]:.2f}–{m.ci95[1]:.2f})",
            delta,
            f"{paired.mcnemar_p:.2g}" if paired else "—",
            f"{m.bytes.mean:,.0f}" if m.bytes else "—",
            f"{m.compression_ratio:.1f}×" if m.compression_ratio else "—",
            f"{m.n}/{row.dataset.n_expected}",
            style="bold" if row.setting == COMPRESSED else "dim",
        )
    return table


def show(golden: GoldenFile, milestone: str | None = None, console: Console | None = None) -> None:
    (console or Console()).print(build_table(golden, milestone))
