"""Human output of `runner run`: a rich progress bar with ETA on stderr (only on a terminal) and the summary
tables on stdout. Errors never go through rich (they are plain `file:line: field: message` lines)."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table


class ProgressUI:
    """One bar per dataset; inert when stderr is not a terminal (logs carry the same information)."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.live = sys.stderr.isatty() if enabled is None else enabled
        self._progress: Progress | None = None
        self._tasks: dict[str, Any] = {}

    def start(self, datasets: dict[str, dict[str, int]]) -> None:
        if not self.live:
            return
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._progress.start()
        for name, d in datasets.items():
            self._tasks[name] = self._progress.add_task(name, total=d["n_total"], completed=d["n_done"])

    def advance(self, dataset: str, n: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._tasks[dataset], n)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def results_table(title: str, results: list[Any]) -> Table:
    """One row per (dataset, setting) of DatasetResult objects."""
    table = Table(title=title)
    for col in ("dataset", "setting", "n", "acc", "95% CI", "errors", "bytes/sample", "tokens sent", "flip", "KL"):
        table.add_column(col, justify="left" if col in ("dataset", "setting") else "right")
    for result in results:
        for name, s in result.settings.items():
            table.add_row(
                result.dataset.name,
                name,
                str(s.n),
                _fmt(s.accuracy, ".3f"),
                f"[{s.ci95[0]:.3f}, {s.ci95[1]:.3f}]",
                str(s.n_errors),
                _fmt(s.bytes.mean if s.bytes else None, ",.0f"),
                _fmt(s.n_tokens_sent.mean if s.n_tokens_sent else None, ".1f"),
                _fmt(s.fidelity.flip_rate if s.fidelity else None, ".3f"),
                _fmt(s.fidelity.mean_kl if s.fidelity else None, ".4f"),
            )
    return table


def subjects_table(results: list[Any]) -> Table | None:
    """Per subject (datasets whose results carry subjects): accuracy and the paired test vs the receiver."""
    rows = [(r, name, s) for r in results for name, s in r.settings.items() if s.subjects]
    if not rows:
        return None
    subjects = sorted({subject for _, _, s in rows for subject in s.subjects})
    table = Table(title="per subject: accuracy (n) · difference vs receiver [McNemar p]")
    for col in ("dataset", "setting", *subjects):
        table.add_column(col, justify="left" if col in ("dataset", "setting") else "right")
    for result, name, s in rows:
        cells = []
        for subject in subjects:
            part = s.subjects.get(subject)
            if part is None:
                cells.append("-")
                continue
            vs = part.paired.get("receiver")
            extra = f" · {vs.diff:+.3f} [p {vs.mcnemar_p:.2g}]" if vs is not None else ""
            cells.append(f"{part.accuracy:.3f} ({part.n}){extra}")
        table.add_row(result.dataset.name, name, *cells)
    return table


def sweep_table(rows: list[dict[str, Any]]) -> Table:
    """One row per grid point and dataset of a sweep: the compressed setting's accuracy, its difference from
    c2c_fp16 with the paired 95 % interval, bytes per sample and compression — the sweep at a glance."""
    table = Table(title="sweep: compressed setting per grid point")
    for col in ("manifest", "decision", "exit", "dataset", "acc", "Δ vs c2c_fp16 [95% CI]", "bytes", "×", "run folder"):
        table.add_column(col, justify="right" if col in ("acc", "bytes", "×") else "left")
    for row in rows:
        head = (row["name"], row["decision"], str(row["exit"]))
        parts = [
            (r.dataset.name, r.settings["compressed"]) for r in row.get("results", []) if "compressed" in r.settings
        ]
        for dataset, s in parts or [("-", None)]:
            vs = s.paired.get("c2c_fp16") if s is not None else None
            table.add_row(
                *head,
                dataset,
                _fmt(s.accuracy if s else None, ".3f"),
                f"{vs.diff:+.3f} [{vs.ci95[0]:+.3f}, {vs.ci95[1]:+.3f}]" if vs is not None else "-",
                _fmt(s.bytes.mean if s and s.bytes else None, ",.0f"),
                _fmt(s.compression_ratio if s else None, ".1f"),
                row["run_dir"],
            )
    return table


def print_table(table: Table) -> None:
    Console(file=sys.stdout, width=160).print(table)
