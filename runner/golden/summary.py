"""golden/golden_summary.md: one table per milestone, generated from golden_runs.json.

Deterministic (sorted rows, fixed number formats, no timestamps or paths), so the file only changes when a
row changes and review diffs show exactly that. Identical baseline rows (the same receiver alone on the same
items, repeated by every run of a milestone) are shown once, with the number of runs that repeated them.
"""

from __future__ import annotations

from collections import defaultdict

from runner.golden.validate import GoldenFile, GoldenRow
from runner.results import BASELINES, COMPRESSED

HEADER = (
    "| run | setting | dataset | accuracy [95% CI] | Δ vs c2c_fp16 [paired 95% CI] | McNemar p "
    "| bytes / sample | compression | n | waived |"
)
RULE = "|---|---|---|---|---|---|---:|---:|---:|---|"
SETTING_ORDER = {name: i for i, name in enumerate(BASELINES)}


def render_summary(golden: GoldenFile) -> str:
    lines = [
        "# Golden results",
        "",
        "Generated from `golden_runs.json` by `python -m runner golden summary`; do not edit by hand.",
        "Accuracy with its Wilson 95% interval; Δ is the paired difference to C2C without compression",
        "(bootstrap 95% interval, exact McNemar p) on the same items; bytes are measured message sizes.",
        "",
    ]
    by_milestone: dict[str, list[GoldenRow]] = defaultdict(list)
    for row in golden.rows.values():
        by_milestone[row.milestone].append(row)
    if not by_milestone:
        lines.append("_No rows yet: `make run` then `make golden`._")
    for milestone in sorted(by_milestone):
        rows = _dedupe(sorted(by_milestone[milestone], key=_order))
        lines += [f"## {milestone}", "", HEADER, RULE]
        lines += [_line(row, repeats) for row, repeats in rows]
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def _order(row: GoldenRow) -> tuple:
    bytes_mean = row.metrics.bytes.mean if row.metrics.bytes else 0.0
    return (
        row.dataset.name,
        SETTING_ORDER.get(row.setting, len(BASELINES)),
        -bytes_mean,
        row.manifest,
        row.run_key,
    )


def _dedupe(rows: list[GoldenRow]) -> list[tuple[GoldenRow, int]]:
    """Baseline rows with the same pair, items and numbers collapse to the first, counting repeats."""
    out: list[tuple[GoldenRow, int]] = []
    index: dict[str, int] = {}
    for row in rows:
        if row.setting == COMPRESSED:
            out.append((row, 1))
            continue
        m = row.metrics
        ident = repr((row.setting, row.pair, row.dataset.fingerprint, m.n, m.n_correct, m.bytes, row.fuser.sha256))
        if ident in index:
            first, count = out[index[ident]]
            out[index[ident]] = (first, count + 1)
        else:
            index[ident] = len(out)
            out.append((row, 1))
    return out


def _line(row: GoldenRow, repeats: int) -> str:
    m = row.metrics
    run = row.manifest if repeats == 1 else f"{row.manifest} (+{repeats - 1} more)"
    setting = row.family if row.setting == COMPRESSED else row.setting
    setting += " (oracle)" if row.metrics.oracle else ""
    accuracy = f"{m.accuracy:.3f} [{m.ci95[0]:.3f}, {m.ci95[1]:.3f}]"
    paired = m.paired.get("c2c_fp16")
    if row.setting == "c2c_fp16":
        delta, p_value = "reference", "—"
    elif paired is None:
        delta, p_value = "—", "—"
    else:
        delta = f"{paired.diff:+.3f} [{paired.ci95[0]:+.3f}, {paired.ci95[1]:+.3f}]"
        p_value = f"{paired.mcnemar_p:.3g}"
    nbytes = f"{m.bytes.mean:,.0f}" if m.bytes else "—"
    ratio = f"{m.compression_ratio:.2f}×" if m.compression_ratio else "—"
    n = f"{m.n}/{row.dataset.n_expected}"
    waived = ", ".join(row.allowed) or ""
    cells = [run, setting, row.dataset.name, accuracy, delta, p_value, nbytes, ratio, n, waived]
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"
