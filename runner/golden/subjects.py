"""The per-subject table of a summary panel (datasets whose items carry a few subjects, like the demo's).

The demo's science lives here: on `sharer_only` items a gain over the receiver is knowledge the message
carried; on `shared` items the difference from the receiver is what fusion costs. Each cell is the
subject's accuracy with its Wilson interval and the paired difference to the receiver (McNemar p) on that
subject's items only.
"""

from __future__ import annotations

from collections.abc import Sequence

from runner.golden.validate import GoldenRow
from runner.results import COMPRESSED


def subject_lines(rows: Sequence[tuple[GoldenRow, int]]) -> list[str]:
    """Markdown lines (empty when no row carries subjects); `rows` as the panel table lists them."""
    with_subjects = [(row, n) for row, n in rows if row.metrics.subjects]
    if not with_subjects:
        return []
    names = sorted({s for row, _ in with_subjects for s in row.metrics.subjects})
    header = "| run | setting | " + " | ".join(f"{s}: accuracy [95% CI] · Δ vs receiver (McNemar p)" for s in names)
    lines = ["Per subject:", "", header + " |", "|---|---|" + "---|" * len(names)]
    for row, repeats in with_subjects:
        run = row.manifest if repeats == 1 else f"{row.manifest} (+{repeats - 1} more)"
        setting = row.family if row.setting == COMPRESSED else row.setting
        cells = [run, setting]
        for name in names:
            part = row.metrics.subjects.get(name)
            if part is None:
                cells.append("—")
                continue
            vs = part.paired.get("receiver")
            versus = (
                "reference"
                if row.setting == "receiver"
                else (f"{vs.diff:+.3f} ({vs.mcnemar_p:.2g})" if vs is not None else "—")
            )
            cells.append(f"{part.accuracy:.3f} [{part.ci95[0]:.3f}, {part.ci95[1]:.3f}] · {versus}")
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return [*lines, ""]
