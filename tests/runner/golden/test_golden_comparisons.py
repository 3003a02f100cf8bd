"""python -m pytest tests/runner/golden/test_golden_comparisons.py -q

Plots and the summary compare like with like: panels per (pair, dataset), baselines per run group (never a
mean of runs), oracle and placebo off the frontier, and the same-bytes table of compressed vs text.
"""

from __future__ import annotations

import random

from golden_factory import N_ITEMS, _paired, _setting, build_result

from runner.golden.merge import rows_from_result
from runner.golden.panels import panels
from runner.golden.plots import write_plots
from runner.golden.same_bytes import render_same_bytes
from runner.golden.summary import render_summary
from runner.golden.validate import GOLDEN_SCHEMA, GoldenFile
from runner.results import DatasetResult


def _correct(tag: str, p: float) -> list[bool]:
    rng = random.Random(tag)
    return [rng.random() < p for _ in range(N_ITEMS)]


def _rows(data: dict, name: str) -> list:
    return rows_from_result(DatasetResult.model_validate(data), f"runs/{name}")


def _with(data: dict, setting: str, correct: list[bool], nbytes: float | None) -> None:
    base = [r for r in ("receiver",) if r in data["settings"]]
    data["settings"][setting] = _setting(correct, nbytes, 60.0, 1.0)
    if nbytes is not None:  # text is all payload
        data["settings"][setting]["bytes"]["breakdown"] = {"payload": nbytes, "scales": 0, "indices": 0, "header": 0}
    ref = _correct(f"receiver/{data['run_key']}", 0.4)
    data["settings"][setting]["paired"] = {b: _paired(correct, ref) for b in base}


def _run(name: str, *, scheme: str = "int4", sharer: str = "tiny:qwen2", oracle: bool = False, mutate=None, **extra):
    data = build_result(name=name, milestone="cmp", scheme=scheme, seed=sum(map(ord, name)))
    data["pair"]["sharer"] = sharer
    data["settings"]["compressed"]["oracle"] = oracle
    if mutate:
        mutate(data)
    for setting, (correct, nbytes) in extra.items():
        _with(data, setting, correct, nbytes)
        data["settings"]["compressed"]["paired"][setting] = _paired(data_correct(data), correct)
    return _rows(data, name)


def data_correct(data: dict) -> list[bool]:
    """A correctness vector with the compressed setting's count (what its paired test is computed from)."""
    k = data["settings"]["compressed"]["n_correct"]
    return [i < k for i in range(N_ITEMS)]


def _golden(rows: list) -> GoldenFile:
    return GoldenFile.model_validate({"schema": GOLDEN_SCHEMA, "rows": {row.key: row for row in rows}})


def _other_items(data: dict) -> None:
    """Another run group: other items (fingerprint) and a receiver that scored differently on them."""
    data["dataset"]["fingerprint"] = "e" * 16
    data["settings"]["receiver"] = _setting([i < 10 for i in range(N_ITEMS)], None, 60.0, 1.0)


def test_baselines_of_two_runs_are_two_lines_never_their_mean() -> None:
    first = _run("a")
    second = _run("b", mutate=_other_items)
    receiver_accuracy = 10 / N_ITEMS
    (panel,) = panels(first + second)
    lines = [line for line in panel.lines() if line.setting == "receiver"]
    values = sorted(line.accuracy for line in lines)
    own = [r.metrics.accuracy for r in first if r.setting == "receiver"][0]
    assert values == sorted([own, receiver_accuracy]) and len({line.group for line in lines}) == 2
    mean = (own + receiver_accuracy) / 2
    assert all(abs(line.accuracy - mean) > 1e-9 for line in lines)


def test_points_of_different_pairs_never_share_a_panel_or_frontier() -> None:
    qwen = _run("q")
    llama = _run("l", sharer="tiny:llama")
    found = panels(qwen + llama)
    assert [p.pair for p in found] == ["tiny:qwen3 ← tiny:llama", "tiny:qwen3 ← tiny:qwen2"]
    for panel in found:
        assert {r.pair.sharer for r in panel.rows} == {panel.pair.split(" ← ")[1]}
        assert {r.run_key for r in panel.points} == {panel.rows[0].run_key}


def test_oracle_and_placebo_points_stay_off_the_frontier() -> None:
    rows = _run("o", oracle=True, c2c_placebo=(_correct("p", 0.9), 8192.0))
    (panel,) = panels(rows)
    on = {(x, y) for x, y in panel.frontier_points}
    assert len(panel.points) == 3  # compressed, c2c_fp16, placebo
    assert on == {(8192.0, [r for r in rows if r.setting == "c2c_fp16"][0].metrics.accuracy)}


def test_same_bytes_table_pairs_compressed_and_text_of_one_run() -> None:
    short, long = _correct("short", 0.5), _correct("long", 0.6)
    rows = _run("t", scheme="int2", text_answer=(short, 20.0), text_analysis=(long, 5000.0))
    text = "\n".join(render_same_bytes(_golden(rows)))
    compressed = [r for r in rows if r.setting == "compressed"][0]
    assert compressed.metrics.bytes.mean == 1250.0
    lines = text.splitlines()
    answer = next(line for line in lines if line.startswith("| text_answer |"))
    assert "— (none this small)" in answer  # no compressed setting fits in 20 bytes
    analysis = next(line for line in lines if line.startswith("| text_analysis |"))
    paired = compressed.metrics.paired["text_analysis"]
    assert "int2" in analysis and f"{paired.diff:+.3f} [{paired.ci95[0]:+.3f}, {paired.ci95[1]:+.3f}]" in analysis
    from_compressed = next(line for line in lines if line.startswith("| int2"))
    assert "| text_answer |" in from_compressed  # the only text at or under 1,250 bytes
    assert f"{compressed.metrics.paired['text_answer'].mcnemar_p:.3g} |" in from_compressed


def test_summary_and_plots_show_text_placebo_and_oracle_rows(tmp_path) -> None:
    rows = _run("s", oracle=True, text_answer=(_correct("x", 0.5), 40.0), c2c_placebo=(_correct("y", 0.6), 8192.0))
    golden = _golden(rows)
    summary = render_summary(golden)
    assert "| text_answer |" in summary and "| c2c_placebo |" in summary and "(oracle)" in summary
    assert "## same bytes: compressed KV vs text" in summary
    (path, _) = write_plots(golden, tmp_path)
    assert path.name == "accuracy_vs_bytes_mini.png" and path.stat().st_size > 10_000
