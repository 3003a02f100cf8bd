"""golden check / summary / plots / show: python -m pytest tests/runner/golden/test_golden_outputs.py -q

The summary snapshot is a recorded file: regenerate it with
`QC2C_UPDATE_SNAPSHOTS=1 python -m pytest tests/runner/golden/test_golden_outputs.py -q` and review the diff.
A missing snapshot fails.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from golden_factory import golden_cli
from matplotlib import image as mpimg
from rich.console import Console

from runner.golden import check_golden, load_golden, merge_runs
from runner.golden.merge import GOLDEN_JSON, SUMMARY_MD
from runner.golden.plots import pareto_frontier, write_plots
from runner.golden.show import build_table
from runner.golden.summary import render_summary
from runner.golden.validate import setting_family
from runner.results import COMPRESSED

SNAPSHOT = Path(__file__).parent / "snapshots" / "golden_summary.md"


def _store(factory, plots: bool = False):
    """A small realistic store: a smoke run, an m2 precision sweep and an m3 selection run on two datasets."""
    runs = [
        factory.make("smoke", "smoke", scheme="int8"),
        factory.make("m2_int8", "m2", scheme="int8", datasets=("mini", "openbookqa")),
        factory.make("m2_int4", "m2", scheme="int4", datasets=("mini", "openbookqa")),
        factory.make("m2_int2", "m2", scheme="int2", datasets=("mini", "openbookqa")),
        factory.make("m3_knorm50", "m3", scheme="int8", keep=0.5, datasets=("mini", "openbookqa")),
        factory.make("m3_knorm25", "m3", scheme="int4", keep=0.25, datasets=("mini", "openbookqa")),
    ]
    assert merge_runs(runs, factory.golden_dir, [], False, plots=plots).ok
    return load_golden(factory.golden_dir / GOLDEN_JSON)


# ---- check ----


def _corrupt(factory, edit) -> list[str]:
    _store(factory)
    path = factory.golden_dir / GOLDEN_JSON
    data = json.loads(path.read_text())
    edit(data["rows"])
    path.write_text(json.dumps(data, indent=2))
    return check_golden(factory.golden_dir)


def _first_compressed(rows: dict) -> dict:
    return next(row for key, row in sorted(rows.items()) if row["setting"] == "compressed")


def test_check_passes_on_a_merged_store(run_factory):
    _store(run_factory)
    assert check_golden(run_factory.golden_dir) == []


def test_check_fails_on_truncated_json_naming_the_line(run_factory, capsys):
    _store(run_factory)
    path = run_factory.golden_dir / GOLDEN_JSON
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    assert golden_cli(["golden", "check", "--golden-dir", str(run_factory.golden_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{path}:") and ": json: " in err and "Traceback" not in err


def test_check_fails_when_a_rate_was_edited_without_its_counts(run_factory):
    problems = _corrupt(run_factory, lambda rows: _first_compressed(rows)["metrics"].update(accuracy=0.99))
    assert any(".metrics: " in p and "n_correct/n" in p for p in problems), problems


def test_check_fails_when_a_row_sits_under_another_key(run_factory):
    def move(rows):
        key = sorted(rows)[0]
        rows["0" * 64 + "/mini/compressed"] = rows.pop(key)

    problems = _corrupt(run_factory, move)
    assert any("key does not match the row" in p for p in problems), problems


def test_check_fails_on_a_hand_made_partial_row(run_factory):
    problems = _corrupt(run_factory, lambda rows: _first_compressed(rows)["dataset"].update(n_total=400))
    assert any(": row_has_full_n: " in p for p in problems), problems


def test_check_fails_on_an_unknown_field(run_factory):
    problems = _corrupt(run_factory, lambda rows: _first_compressed(rows).update(note="looks fine"))
    assert any("note: Extra inputs are not permitted" in p for p in problems), problems


def test_check_fails_on_a_missing_store(tmp_path):
    assert check_golden(tmp_path) == [f"{tmp_path / GOLDEN_JSON}: not found"]


# ---- summary ----


def test_summary_matches_the_recorded_snapshot(run_factory):
    text = render_summary(_store(run_factory))
    if os.environ.get("QC2C_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(text)
    if not SNAPSHOT.exists():
        pytest.fail(f"{SNAPSHOT} is missing; record it with QC2C_UPDATE_SNAPSHOTS=1 and review it")
    assert text == SNAPSHOT.read_text(), "summary changed; if intended, re-record with QC2C_UPDATE_SNAPSHOTS=1"
    assert (run_factory.golden_dir / SUMMARY_MD).read_text() == text


def test_summary_has_one_table_per_milestone_and_every_row(run_factory):
    golden = _store(run_factory)
    text = render_summary(golden)
    sections = ["## m2", "## m3", "## smoke", "## same bytes: compressed KV vs text"]
    assert [line for line in text.splitlines() if line.startswith("## ")] == sections
    for manifest in ("m2_int8", "m2_int4", "m2_int2", "m3_knorm50", "m3_knorm25", "smoke"):
        assert f"| {manifest} |" in text
    compressed = [row for row in golden.rows.values() if row.setting == "compressed"]
    assert sum(line.count("| 40/40 |") for line in text.splitlines()) >= len(compressed)
    assert "(+2 more)" in text  # the m2 receiver baseline repeated by three runs is shown once per dataset


def test_summary_command_rewrites_the_same_bytes(run_factory):
    _store(run_factory)
    path = run_factory.golden_dir / SUMMARY_MD
    before = path.read_bytes()
    path.unlink()
    assert golden_cli(["golden", "summary", "--golden-dir", str(run_factory.golden_dir)]) == 0
    assert path.read_bytes() == before


# ---- plots ----


def _pixels(path: Path) -> np.ndarray:
    rgb = mpimg.imread(path)[..., :3]
    return np.round(rgb * 255).astype(np.uint8)


def _has_color(pixels: np.ndarray, hex_color: str, tol: int = 12, min_pixels: int = 20) -> bool:
    target = np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(pixels.astype(int) - target).max(axis=-1) <= tol).sum()) >= min_pixels


def test_pareto_frontier_keeps_only_undominated_points():
    # by hand: (2, .4) is beaten by the cheaper (1, .5); (3, .55) by (3, .6); (4, .6) is no better than (3, .6)
    points = [(4, 0.6), (2, 0.4), (1, 0.5), (3, 0.55), (3, 0.6)]
    assert pareto_frontier(points) == [(1, 0.5), (3, 0.6)]


def test_plots_render_budget_curves_with_frontier_baselines_and_the_layer_view(run_factory):
    _store(run_factory, plots=True)
    plots = run_factory.golden_dir / "plots"
    names = sorted(p.name for p in plots.glob("*.png"))
    assert names == ["accuracy_vs_bytes_mini.png", "accuracy_vs_bytes_openbookqa.png", "precision_layers.png"]
    for name in names:
        pixels = _pixels(plots / name)
        non_white = (pixels < 245).any(axis=-1).mean()
        assert non_white > 0.04, f"{name}: only {non_white:.3f} of the pixels are drawn"
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 30, f"{name}: too few distinct colors"
    curve = _pixels(plots / "accuracy_vs_bytes_mini.png")
    assert _has_color(curve, "#d62728")  # tab:red, the Pareto frontier
    assert _has_color(curve, "#1f77b4") and _has_color(curve, "#ff7f0e")  # first two setting families
    assert _has_color(curve, "#000000")  # the c2c_fp16 baseline line
    layers = _pixels(plots / "precision_layers.png")
    assert _has_color(layers, "#ff7f0e")  # tab:orange bars of the fraction of tokens sent


def test_plots_are_byte_identical_when_regenerated(run_factory, tmp_path):
    golden = _store(run_factory, plots=True)
    again = write_plots(golden, tmp_path / "again")
    for path in again:
        assert path.read_bytes() == (run_factory.golden_dir / "plots" / path.name).read_bytes()


def test_plots_command_writes_the_files(run_factory, capsys):
    _store(run_factory)
    assert golden_cli(["golden", "plots", "--golden-dir", str(run_factory.golden_dir)]) == 0
    assert len(list((run_factory.golden_dir / "plots").glob("*.png"))) == 3


# ---- show ----


def test_show_prints_a_table_filtered_by_milestone(run_factory):
    golden = _store(run_factory)
    console = Console(record=True, width=220)
    console.print(build_table(golden, "m3"))
    text = console.export_text()
    assert "m3_knorm50" in text and "int8+knorm" in text and "m2_int4" not in text
    console = Console(record=True, width=220)
    console.print(build_table(golden))
    text = console.export_text()
    assert all(name in text for name in ("smoke", "m2_int2", "m3_knorm25"))


def test_check_fails_on_a_row_key_written_twice(run_factory):
    _store(run_factory)
    path = run_factory.golden_dir / GOLDEN_JSON
    data = json.loads(path.read_text())
    key, row = sorted(data["rows"].items())[0]
    body = json.dumps(row)
    path.write_text('{"schema": 1, "rows": {' + f'"{key}": {body}, "{key}": {body}' + "}}")
    problems = check_golden(run_factory.golden_dir)
    assert problems == [f"{path}: json: key {key} appears twice (a hand merge?); one row would be lost"]


def test_the_family_names_the_quantizer_convention_where_it_changes_numbers() -> None:
    """Plots and the summary keep kivi and observer rows apart; rows from before kv.quant.convention carry none."""
    quant = {"scheme": "int4", "symmetric": False, "convention": "kivi"}
    knorm = {"method": "knorm", "keep": 0.5}
    assert setting_family(COMPRESSED, {"quant": quant, "selection": knorm}) == "int4+kivi+knorm"
    observer = {**quant, "convention": "observer"}
    assert setting_family(COMPRESSED, {"quant": observer, "precision": {"last_fp16": 2}}) == "int4+observer+mixed"
    assert setting_family(COMPRESSED, {"quant": {**quant, "scheme": "nf4"}}) == "nf4"
    assert setting_family(COMPRESSED, {"quant": {**quant, "symmetric": True}}) == "int4"
    budget = {"bytes_per_sample": 100, "allocator": "greedy", "candidates": ["drop", "int4", "int8"]}
    assert setting_family(COMPRESSED, {"quant": {**quant, "scheme": "fp16"}, "budget": budget}) == "budget+greedy+kivi"
    assert setting_family(COMPRESSED, {"quant": {"scheme": "int4"}, "selection": knorm}) == "int4+knorm"


@pytest.mark.parametrize("milestone", [None, "m3"])
def test_show_is_readable_at_80_columns(run_factory, milestone):
    """Every line fits, and every number is whole (none folded over two lines or cut with an ellipsis)."""
    golden = _store(run_factory)
    console = Console(record=True, width=80)
    console.print(build_table(golden, milestone, width=80))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text
    rows = [r for r in golden.rows.values() if milestone is None or r.milestone == milestone]
    for row in rows:
        assert f"{row.metrics.accuracy:.3f} ± " in text
        if row.metrics.bytes:
            assert f"{row.metrics.bytes.mean:,.0f}" in text
