"""golden/plots/*.png: budget curves (accuracy vs bytes per sample) and the per-layer precision view.

Budget curves, one file per dataset with one panel per model pair (runner.golden.panels): every setting that
sends something is a point (x = mean measured bytes per sample, log scale; y = accuracy with its Wilson 95%
interval): one marker per compressed family, and markers of their own for c2c_fp16 (star), the placebo (X)
and the text-to-text settings; oracle selections are hollow. The Pareto frontier of the realistic points
(no oracle, no placebo) is a step line; the receiver and sharer alone are horizontal lines, one per run group
(never a mean over runs). Precision view: bits per receiver and per sharer layer of each compressed row,
beside the fraction of prompt tokens actually sent.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from qc2c.kv.quant import SCHEMES  # noqa: E402
from runner import fsio  # noqa: E402
from runner.golden.panels import Panel, marker_name, panels  # noqa: E402
from runner.golden.validate import GoldenFile, GoldenRow  # noqa: E402
from runner.results import COMPRESSED  # noqa: E402

MARKERS = ("o", "s", "^", "D", "v", "P", "<", ">", "d", "8")
BASELINE_STYLE = {"receiver": ("tab:gray", ":"), "sharer": ("tab:brown", "-."), "c2c_fp16": ("black", "--")}
# Settings with a marker of their own (families of the compressed setting cycle through MARKERS and tab10).
SETTING_STYLE = {
    "c2c_fp16": ("black", "*"),
    "c2c_placebo": ("dimgray", "X"),
    "text_answer": ("tab:green", "p"),
    "text_analysis": ("tab:olive", "H"),
    "latent": ("crimson", "*"),  # the latent wire (docs/latent.md): one hue, marker by precision
    "latent_int8": ("crimson", "h"),
    "latent_int4": ("crimson", "d"),
    "latent_text": ("tab:pink", "p"),
    "latent_placebo": ("lightcoral", "X"),
}
SETTING_LABEL = {
    "c2c_fp16": "c2c_fp16 (uncompressed KV message)",
    "c2c_placebo": "c2c_placebo (another item's message: control)",
    "text_answer": "text_answer (the sharer's answer as text)",
    "text_analysis": "text_analysis (the sharer's analysis as text)",
    "latent": "latent (fp16 latent wire)",
    "latent_int8": "latent_int8 (int8 latent wire)",
    "latent_int4": "latent_int4 (int4 latent wire)",
    "latent_text": "latent_text (the wire's source as text)",
    "latent_placebo": "latent_placebo (another item's wire: control)",
}
MIN_BYTES = 1.0  # an empty text (0 bytes) is drawn at 1 byte on the log axis
PNG_METADATA = {"Software": None}  # no version string: the same rows give the same bytes


def pareto_frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points (bytes, accuracy) not dominated by a point with fewer-or-equal bytes and higher accuracy."""
    frontier: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not frontier or y > frontier[-1][1]:
            frontier.append((x, y))
    return frontier


def write_plots(golden: GoldenFile, plots_dir: Path) -> list[Path]:
    """Render every plot into `plots_dir` (atomic writes); returns the files written."""
    by_dataset: dict[str, list[Panel]] = defaultdict(list)
    for panel in panels(list(golden.rows.values())):
        by_dataset[panel.dataset].append(panel)
    written = []
    for dataset in sorted(by_dataset):
        written.append(
            _save(plot_budget_curves(dataset, by_dataset[dataset]), plots_dir / f"accuracy_vs_bytes_{dataset}.png")
        )
    compressed = [r for r in golden.rows.values() if r.setting == COMPRESSED and r.precision is not None]
    if compressed:
        written.append(_save(plot_precision(compressed), plots_dir / "precision_layers.png"))
    return written


def _save(fig: plt.Figure, path: Path) -> Path:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, metadata=PNG_METADATA)
    plt.close(fig)
    fsio.atomic_write(path, buffer.getvalue())
    return path


def plot_budget_curves(dataset: str, pair_panels: list[Panel]) -> plt.Figure:
    """One panel per model pair on `dataset` (see runner.golden.panels for what is compared with what)."""
    fig, axes = plt.subplots(len(pair_panels), 1, figsize=(10.5, 5 * len(pair_panels)), squeeze=False)
    for ax, panel in zip(axes[:, 0], pair_panels):
        _draw_panel(ax, panel)
    fig.tight_layout()
    return fig


def _styles(points: list[GoldenRow]) -> dict[str, tuple[str, str]]:
    """(color, marker) per legend entry: fixed for the reference/control/text settings, cycled for families."""
    styles = dict(SETTING_STYLE)
    families = sorted({marker_name(r) for r in points} - set(styles))
    colors = plt.get_cmap("tab10")
    for i, family in enumerate(families):
        styles[family] = (colors(i % 10), MARKERS[i % len(MARKERS)])
    return styles


def _draw_panel(ax: plt.Axes, panel: Panel) -> None:
    points = panel.points
    styles = _styles(points)
    for name in sorted({marker_name(r) for r in points}, key=lambda n: (n in SETTING_STYLE, n)):
        color, marker = styles[name]
        for oracle in (False, True):
            group = [r for r in points if marker_name(r) == name and r.metrics.oracle == oracle]
            if not group:
                continue
            xs = [max(r.metrics.bytes.mean, MIN_BYTES) for r in group]
            ys = [r.metrics.accuracy for r in group]
            err = np.array(
                [[y - r.metrics.ci95[0] for r, y in zip(group, ys)], [r.metrics.ci95[1] - y for r, y in zip(group, ys)]]
            )
            ax.errorbar(
                xs,
                ys,
                yerr=err,
                fmt=marker,
                color=color,
                ms=8,
                capsize=3,
                mfc="none" if oracle else color,
                label=SETTING_LABEL.get(name, name) + (" (oracle, hollow)" if oracle else ""),
            )
    frontier = pareto_frontier(panel.frontier_points)
    if len(frontier) > 1:
        fx, fy = zip(*frontier)
        ax.step(
            fx, fy, where="post", color="tab:red", lw=1.5, alpha=0.7, label="Pareto frontier (oracle, placebo left out)"
        )
    for line in panel.lines():
        color, style = BASELINE_STYLE.get(line.setting, ("tab:purple", ":"))
        label = f"{line.setting} (baseline{', ' + line.group if line.group else ''})"
        ax.axhline(line.accuracy, color=color, ls=style, lw=1.2, label=label)
    if points:
        ax.set_xscale("log")
    else:
        ax.text(0.5, 0.5, "no setting sends a message", transform=ax.transAxes, ha="center")
    ax.set_xlabel("bytes per sample (measured message or text size, log scale)")
    ax.set_ylabel("accuracy (Wilson 95% CI)")
    ax.set_title(f"{panel.dataset} · {panel.pair}: accuracy vs bytes sent")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)  # never over a point


def _bits(scheme: str | None) -> float:
    """Bits per element a layer is sent at (the scheme family's `bits`; fp32 is the codec's lossless float32
    reference): 0 for a layer that is not sent, NaN for a name qc2c no longer knows."""
    if scheme is None:
        return 0.0
    return float(SCHEMES.get(scheme).bits) if scheme in SCHEMES else math.nan


def plot_precision(rows: list[GoldenRow]) -> plt.Figure:
    rows = sorted(rows, key=lambda r: (r.milestone, r.manifest, r.dataset.name, r.run_key))
    labels = [f"{r.manifest} · {r.dataset.name}" for r in rows]
    receiver = _matrix([[_bits(s) for s in r.precision.receiver] for r in rows])
    sharer = _matrix([[_bits(s) for s in r.precision.sharer] for r in rows])
    kept = [
        (r.metrics.n_tokens_sent.mean / r.metrics.n_tokens_prompt_mean)
        if r.metrics.n_tokens_sent and r.metrics.n_tokens_prompt_mean
        else math.nan
        for r in rows
    ]
    height = 1.6 + 0.35 * len(rows)
    fig, axes = plt.subplots(1, 3, figsize=(13, height), gridspec_kw={"width_ratios": [3, 3, 1.4]})
    cmap = plt.get_cmap("viridis").with_extremes(bad="lightgray")
    for ax, matrix, title in ((axes[0], receiver, "receiver layers"), (axes[1], sharer, "sharer layers (as sent)")):
        image = ax.imshow(matrix, aspect="auto", cmap=cmap, vmin=0, vmax=16, interpolation="nearest")
        ax.set_title(f"bits per element: {title}", fontsize=9)
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_yticks(range(len(rows)), labels if ax is axes[0] else [""] * len(rows), fontsize=8)
    fig.colorbar(image, ax=axes[1], fraction=0.05, label="bits (0 = not sent)")
    axes[2].barh(range(len(rows)), kept, color="tab:orange")
    axes[2].set_xlim(0, 1.05)
    axes[2].set_ylim(len(rows) - 0.5, -0.5)  # the same rows as the image panels, top to bottom
    axes[2].set_yticks(range(len(rows)), [""] * len(rows))
    axes[2].set_title("prompt tokens sent (fraction)", fontsize=9)
    fig.tight_layout()
    return fig


def _matrix(rows: list[list[float]]) -> np.ma.MaskedArray:
    width = max((len(r) for r in rows), default=0)
    data = np.full((len(rows), max(width, 1)), np.nan)
    for i, values in enumerate(rows):
        data[i, : len(values)] = values
    return np.ma.masked_invalid(data)
