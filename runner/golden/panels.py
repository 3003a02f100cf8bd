"""What the golden plots and summary compare, like with like: rows grouped by (pair, dataset) into panels.

* A panel holds one model pair on one dataset; points of different pairs never share a panel, a curve or a
  frontier (a Llama-sharer point is never drawn beside Qwen-sharer points).
* A run group is the rows that share pair, fuser, protocol and evaluated items (the dataset fingerprint):
  the receiver and sharer of a run group are the same numbers in every run of it, so each run group's
  baselines are a line of their own, never averaged with another group's.
* Points are the settings that send something (a measured size on the bytes axis): compressed, c2c_fp16,
  c2c_placebo, text_answer, text_analysis. The Pareto frontier is drawn over the settings a real sender can
  use, so oracle selections (upper bounds) and the placebo (a control) are left out of it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from runner.golden.validate import GoldenRow
from runner.results import COMPRESSED

OFF_FRONTIER = ("c2c_placebo", "latent_placebo")  # controls, not messages a sender would choose


def pair_label(row: GoldenRow) -> str:
    """`receiver ← sharer` (and the alignment when there is one)."""
    p = row.pair
    return f"{p.receiver} ← {p.sharer}" + ("" if p.alignment == "none" else f" (alignment {p.alignment})")


def run_group(row: GoldenRow) -> tuple:
    """Rows whose baselines must agree: same pair, fuser, protocol and items."""
    p = row.pair
    return (p.receiver, p.sharer, p.alignment, row.fuser.sha256, row.protocol, row.dataset.fingerprint)


def group_label(row: GoldenRow) -> str:
    """A short name for a run group in a legend: items and fuser."""
    fuser = (row.fuser.sha256 or "none")[:8]
    return f"n={row.dataset.n_expected}, items {row.dataset.fingerprint[:8]}, fuser {fuser}, {row.protocol}"


def marker_name(row: GoldenRow) -> str:
    """The legend entry of a point: the compressed family, or the setting's own name."""
    return row.family if row.setting == COMPRESSED else row.setting


def is_point(row: GoldenRow) -> bool:
    return row.metrics.bytes is not None


def on_frontier(row: GoldenRow) -> bool:
    return is_point(row) and not row.metrics.oracle and row.setting not in OFF_FRONTIER


@dataclass
class Line:
    """A baseline drawn as a horizontal line: one setting of one run group."""

    setting: str
    accuracy: float
    group: str
    rows: list[GoldenRow]


@dataclass
class Panel:
    pair: str
    dataset: str
    rows: list[GoldenRow]

    @property
    def points(self) -> list[GoldenRow]:
        return sorted((r for r in self.rows if is_point(r)), key=lambda r: r.key)

    @property
    def frontier_points(self) -> list[tuple[float, float]]:
        return [(r.metrics.bytes.mean, r.metrics.accuracy) for r in self.points if on_frontier(r)]

    def lines(self) -> list[Line]:
        """Baselines without bytes, one line per (setting, run group, accuracy): never a mean of runs."""
        found: dict[tuple, Line] = {}
        groups = sorted({run_group(r) for r in self.rows})
        for row in sorted(self.rows, key=lambda r: r.key):
            if is_point(row):
                continue
            key = (row.setting, groups.index(run_group(row)), row.metrics.accuracy)
            label = group_label(row) if len(groups) > 1 else ""
            found.setdefault(key, Line(row.setting, row.metrics.accuracy, label, [])).rows.append(row)
        return [found[k] for k in sorted(found)]


def panels(rows: list[GoldenRow]) -> list[Panel]:
    """Rows grouped by (pair, dataset), sorted by dataset then pair."""
    grouped: dict[tuple[str, str], list[GoldenRow]] = defaultdict(list)
    for row in rows:
        grouped[(row.dataset.name, pair_label(row))].append(row)
    return [Panel(pair, dataset, grouped[(dataset, pair)]) for dataset, pair in sorted(grouped)]
