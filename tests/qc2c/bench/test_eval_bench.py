"""python -m pytest tests/qc2c/bench/test_eval_bench.py -q

The eval benchmark runs both paths on the same items and checks identical predictions in the same run; the
ratio itself depends on the machine, so it is printed, not asserted here.
"""

from __future__ import annotations

import json

from qc2c.bench.eval import main


def test_bench_reports_both_rates_and_identical_predictions(capsys) -> None:
    assert main(["--n", "6", "--batch", "3", "--settings", "receiver", "compressed", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 6 and set(report["settings"]) == {"receiver", "compressed"}
    for r in report["settings"].values():
        assert r["identical_predictions"] is True
        assert r["batched_samples_per_s"] > 0 and r["one_at_a_time_samples_per_s"] > 0
        assert abs(r["ratio"] - r["batched_samples_per_s"] / r["one_at_a_time_samples_per_s"]) < 1e-9


def test_bench_text_output_prints_the_ratio(capsys) -> None:
    assert main(["--n", "4", "--batch", "4", "--protocol", "generate", "--max-new-tokens", "2"]) == 0
    out = capsys.readouterr().out
    assert "ratio" in out and "identical predictions: True" in out
