"""golden/golden_summary.md: per milestone, one table per (dataset, model pair); then the same-bytes comparison.

Deterministic (sorted rows, fixed number formats, no timestamps or paths), so the file only changes when a
row changes and review diffs show exactly that. Rows are grouped like the plots (runner.golden.panels): a
table never mixes model pairs. Identical baseline rows (the same receiver alone on the same items, repeated
by every run of a milestone) are shown once, with the number of runs that repeated them; they are never
averaged. Oracle selections are marked "(oracle)".
"""

from __future__ import annotations

from collections import defaultdict

from runner.golden.latent_table import render_latent
from runner.golden.panels import panels
from runner.golden.same_bytes import render_same_bytes
from runner.golden.subjects import subject_lines
from runner.golden.validate import GoldenFile, GoldenRow
from runner.results import BASELINES, COMPRESSED

HEADER = (
    "| run | setting | accuracy [95% CI] | Δ vs c2c_fp16 [paired 95% CI] | McNemar p "
    "| Δ vs receiver [paired 95% CI] | McNemar p | bytes / sample | compression | n | waived |"
)
RULE = "|---|---|---|---|---|---|---|---:|---:|---:|---|"
SETTING_ORDER = {name: i for i, name in enumerate(BASELINES)}


def render_summary(golden: GoldenFile) -> str:
    lines = [
        "# Golden results",
        "",
        "Generated from `golden_runs.json` by `python -m runner golden summary`; do not edit by hand.",
        "Accuracy with its Wilson 95% interval; Δ is the paired difference to C2C without compression and to",
        "the receiver alone (bootstrap 95% interval, exact McNemar p) on the same items. Bytes are measured",
        "message sizes (the UTF-8 text for text_answer / text_analysis); compression is c2c_fp16's bytes over",
        "the setting's. c2c_placebo fuses another item's c2c_fp16 message (a control); '(oracle)' marks a",
        "selection that reads the receiver's state, which a real sender does not have.",
        "",
    ]
    by_milestone: dict[str, list[GoldenRow]] = defaultdict(list)
    for row in golden.rows.values():
        by_milestone[row.milestone].append(row)
    if not by_milestone:
        lines.append("_No rows yet: `make run` then `make golden`._")
    for milestone in sorted(by_milestone):
        lines += [f"## {milestone}", ""]
        for panel in panels(by_milestone[milestone]):
            table = _dedupe(sorted(panel.rows, key=_order))
            lines += [f"### {panel.dataset} · {panel.pair}", "", HEADER, RULE]
            lines += [_line(row, repeats) for row, repeats in table]
            lines.append("")
            lines += subject_lines(table)
    same_bytes = render_same_bytes(golden)
    if by_milestone:
        lines += ["## same bytes: compressed KV vs text", ""]
        lines += same_bytes or ["_No pair has both text-to-text and compressed rows on the same items._", ""]
    latent = render_latent(golden)
    if latent:  # only once a run scored the latent wire (runner.golden.latent_table)
        lines += ["## latent wire vs KV vs text", ""] + latent
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
    delta, p_value = _versus(row, "c2c_fp16")
    delta_r, p_value_r = _versus(row, "receiver")
    nbytes = f"{m.bytes.mean:,.0f}" if m.bytes else "—"
    ratio = f"{m.compression_ratio:.2f}×" if m.compression_ratio else "—"
    n = f"{m.n}/{row.dataset.n_expected}"
    waived = ", ".join(row.allowed) or ""
    cells = [run, setting, accuracy, delta, p_value, delta_r, p_value_r, nbytes, ratio, n, waived]
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _versus(row: GoldenRow, baseline: str) -> tuple[str, str]:
    """(Δ [paired 95% CI], McNemar p) of the row against `baseline` of its own run."""
    paired = row.metrics.paired.get(baseline)
    if row.setting == baseline:
        return "reference", "—"
    if paired is None:
        return "—", "—"
    return f"{paired.diff:+.3f} [{paired.ci95[0]:+.3f}, {paired.ci95[1]:+.3f}]", f"{paired.mcnemar_p:.3g}"
