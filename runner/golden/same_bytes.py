"""The same-bytes comparison of golden_summary.md: is a compressed KV message worth its bytes next to text?

For each model pair and dataset (and the same evaluated items and protocol), two tables:

* for each text setting (text_answer, text_analysis), the most accurate compressed setting that sends at
  most as many bytes per sample as the text;
* for each compressed setting, the most accurate text setting that sends at most as many bytes.

Δ is accuracy(compressed) − accuracy(text). It is a paired test (bootstrap 95% interval, exact McNemar p)
when both settings were scored in the same run, on the same items in the same batch step
(`metrics.paired[<text setting>]` of the compressed row); rows from different runs are shown unpaired.
The placebo is a control, not an option, and is never a candidate; oracle selections are marked.
"""

from __future__ import annotations

from collections import defaultdict

from runner.golden.panels import pair_label
from runner.golden.validate import GoldenFile, GoldenRow
from runner.results import COMPRESSED, TEXT

TEXT_HEADER = (
    "| text | bytes | accuracy | best compressed at or under its bytes | bytes | accuracy "
    "| Δ compressed − text [paired 95% CI] | McNemar p |"
)
COMPRESSED_HEADER = (
    "| compressed | bytes | accuracy | best text at or under its bytes | bytes | accuracy "
    "| Δ compressed − text [paired 95% CI] | McNemar p |"
)
RULE = "|---|---:|---:|---|---:|---:|---|---:|"


def _items(row: GoldenRow) -> tuple:
    """Rows comparable at all: same pair, dataset items and protocol (the fuser may differ: text needs none)."""
    p = row.pair
    return (row.dataset.name, pair_label(row), p.receiver, p.sharer, row.dataset.fingerprint, row.protocol)


def _best(rows: list[GoldenRow], limit: float) -> GoldenRow | None:
    """The most accurate row sending at most `limit` bytes (ties: fewer bytes, then key)."""
    fitting = [r for r in rows if r.metrics.bytes.mean <= limit]
    return min(fitting, key=lambda r: (-r.metrics.accuracy, r.metrics.bytes.mean, r.key), default=None)


def _unique_text(rows: list[GoldenRow]) -> list[GoldenRow]:
    """Text rows repeated with the same numbers by every run of a sweep, shown once."""
    seen: dict[tuple, GoldenRow] = {}
    for row in sorted(rows, key=lambda r: r.key):
        m = row.metrics
        seen.setdefault((row.setting, m.n_correct, m.n, m.bytes.mean), row)
    return list(seen.values())


def _name(row: GoldenRow) -> str:
    if row.setting != COMPRESSED:
        return row.setting
    return f"{row.family}{' (oracle)' if row.metrics.oracle else ''} · {row.manifest}"


def _delta(compressed: GoldenRow, text: GoldenRow) -> tuple[str, str]:
    paired = compressed.metrics.paired.get(text.setting)
    if paired is None or text.run_key != compressed.run_key:
        diff = compressed.metrics.accuracy - text.metrics.accuracy
        return f"{diff:+.3f} (unpaired: different runs)", "—"
    return f"{paired.diff:+.3f} [{paired.ci95[0]:+.3f}, {paired.ci95[1]:+.3f}]", f"{paired.mcnemar_p:.3g}"


def _cells(first: GoldenRow, second: GoldenRow | None, compressed_first: bool) -> str:
    def side(row: GoldenRow) -> list[str]:
        return [_name(row), f"{row.metrics.bytes.mean:,.0f}", f"{row.metrics.accuracy:.3f}"]

    if second is None:
        cells = [*side(first), "— (none this small)", "—", "—", "—", "—"]
    else:
        compressed, text = (first, second) if compressed_first else (second, first)
        cells = [*side(first), *side(second), *_delta(compressed, text)]
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def render_same_bytes(golden: GoldenFile) -> list[str]:
    """The section's lines (empty list when no pair has both text and compressed rows)."""
    groups: dict[tuple, list[GoldenRow]] = defaultdict(list)
    for row in golden.rows.values():
        if row.metrics.bytes is not None and (row.setting == COMPRESSED or row.setting in TEXT):
            groups[_items(row)].append(row)
    lines: list[str] = []
    for key in sorted(groups):
        rows = groups[key]
        texts = _unique_text([r for r in rows if r.setting in TEXT])
        compressed = sorted((r for r in rows if r.setting == COMPRESSED), key=lambda r: (r.metrics.bytes.mean, r.key))
        if not texts or not compressed:
            continue
        dataset, pair = key[0], key[1]
        lines += [f"### {dataset} · {pair}", "", TEXT_HEADER, RULE]
        for text in texts:
            best = _best(compressed, text.metrics.bytes.mean)
            lines.append(_cells(_paired_text(best, text, rows) if best else text, best, compressed_first=False))
        lines += ["", COMPRESSED_HEADER, RULE]
        for row in compressed:
            best = _best([_paired_text(row, t, rows) for t in texts], row.metrics.bytes.mean)
            lines.append(_cells(row, best, compressed_first=True))
        lines.append("")
    return lines


def _paired_text(compressed: GoldenRow, text: GoldenRow, rows: list[GoldenRow]) -> GoldenRow:
    """`text`'s twin from the compressed row's own run when there is one (same numbers, and a paired test)."""
    twin = [r for r in rows if r.setting == text.setting and r.run_key == compressed.run_key]
    same = twin and (twin[0].metrics.n_correct, twin[0].metrics.bytes) == (text.metrics.n_correct, text.metrics.bytes)
    return twin[0] if same else text
