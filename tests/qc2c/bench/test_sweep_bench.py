"""python -m pytest tests/qc2c/bench/test_sweep_bench.py -q

`python -m qc2c.bench sweep` on a few items: a 16-point grid scored separately and as one group, rows
compared, ratios and floor reported; a grouped path that scored another point's codec would differ.
"""

from __future__ import annotations

import json

from qc2c.bench.sweep import grid, main


def test_sweep_bench_compares_sixteen_separate_runs_with_one_group(capsys) -> None:
    assert main(["--n", "4", "--batch", "2", "--repeats", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["identical"] is True and report["points"] == 16
    assert report["separate_s"] > 0 and report["group_s"] > 0 and report["floor_s"] > 0
    assert abs(report["ratio"] - report["separate_s"] / report["group_s"]) < 1e-9
    assert abs(report["group_over_floor"] - report["group_s"] / report["floor_s"]) < 1e-9


def test_the_grids_have_sixteen_distinct_codecs() -> None:
    for pair in ("tiny", "demo"):
        points = grid(pair)
        assert len(points) == 16 and len({kv for _, kv in points}) == 16 and len({n for n, _ in points}) == 16
