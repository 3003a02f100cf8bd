"""The summary's "latent wire vs KV vs text" section: text, C2C KV messages and the latent wire on the same items.

One table per dataset and receiver whose runs scored latent settings (manifests/demo_latent*.yaml). Each row is
one setting of one run at its measured bytes per sample; `sharer_only` is the accuracy on the held-out
facts the receiver does not know; Δ is the paired difference to the same run's `latent` setting (bootstrap 95% interval, exact McNemar p: the same items, the same batch step). A setting
whose numbers another run of the table already showed is listed once. The short-answer columns (EM, F1,
first-token acceptance, NLL per answer token) exist for the latent settings only; "text / bytes" is the
compression against the same run's `latent_text` (the wire's source as UTF-8 text).
"""

from __future__ import annotations

from collections import defaultdict

from runner.golden.validate import COMPRESSED, GoldenFile, GoldenRow

HEADER = (
    "| setting | run | bytes | text / bytes | accuracy | sharer_only (Δ vs latent, p) | Δ vs latent [paired 95% CI] | McNemar p "
    "| EM | F1 | first_acc | NLL/token |"
)
RULE = "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"
LATENT = "latent"


def _group(row: GoldenRow) -> tuple:
    return (row.dataset.name, row.pair.receiver, row.dataset.fingerprint, row.protocol)


def _cells(row: GoldenRow, text_bytes: float | None) -> list[str]:
    m = row.metrics
    name = f"{row.family} ({row.setting})" if row.setting == COMPRESSED else row.setting
    size = f"{m.bytes.mean:,.0f}" if m.bytes is not None else "—"
    ratio = f"{text_bytes / m.bytes.mean:.3g}" if m.bytes is not None and m.bytes.mean and text_bytes else "—"
    subject = (m.subjects or {}).get("sharer_only")
    held_out = f"{subject.accuracy:.3f}" if subject is not None else "—"
    if subject is not None and LATENT in subject.paired:
        sp = subject.paired[LATENT]
        held_out += f" ({sp.diff:+.3f}, p {sp.mcnemar_p:.2g})"
    paired = m.paired.get(LATENT)
    delta, p = ("—", "—")
    if paired is not None:
        delta = f"{paired.diff:+.3f} [{paired.ci95[0]:+.3f}, {paired.ci95[1]:+.3f}]"
        p = f"{paired.mcnemar_p:.3g}"
    qa = m.qa
    short = (
        [f"{qa.exact_match:.3f}", f"{qa.f1:.3f}", f"{qa.first_acc:.3f}", f"{qa.nll_per_token:.3f}"] if qa else ["—"] * 4
    )
    return [name, row.manifest, size, ratio, f"{m.accuracy:.3f}", held_out, delta, p, *short]


def render_latent(golden: GoldenFile) -> list[str]:
    """The section's lines (empty when no run scored a latent setting)."""
    runs: dict[str, list[GoldenRow]] = defaultdict(list)
    for row in golden.rows.values():
        runs[row.run_key].append(row)
    groups: dict[tuple, list[list[GoldenRow]]] = defaultdict(list)
    for rows in runs.values():
        if any(r.setting == LATENT for r in rows):
            groups[_group(rows[0])].append(rows)
    lines: list[str] = []
    for key in sorted(groups):
        dataset, receiver = key[0], key[1]
        lines += [f"### {dataset} · receiver {receiver}", "", HEADER, RULE]
        seen: set[tuple] = set()
        for rows in sorted(groups[key], key=lambda rs: (rs[0].manifest, rs[0].run_key)):
            text = next((r.metrics.bytes.mean for r in rows if r.setting == "latent_text" and r.metrics.bytes), None)
            for row in sorted(rows, key=lambda r: (-(r.metrics.bytes.mean if r.metrics.bytes else 1e18), r.setting)):
                m = row.metrics
                ident = (row.setting, row.family, m.n_correct, m.n, m.bytes.mean if m.bytes else None)
                if ident in seen:
                    continue
                seen.add(ident)
                lines.append("| " + " | ".join(c.replace("|", "\\|") for c in _cells(row, text)) + " |")
        lines.append("")
    return lines
