"""Paired comparison across runs: items joined by id, McNemar against the first column, refusals.
.venv/bin/python -m pytest tests/runner/test_cross_run.py -q"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qc2c.eval.metrics import mcnemar
from runner.cross_run import compare, correct_by_item, main


def _run(folder: Path, rows: list[tuple[str, str, dict[str, tuple[bool, str]]]]) -> Path:
    (folder / "progress").mkdir(parents=True)
    lines = [
        {"id": i, "subject": s, "settings": {k: {"correct": c, "pred": p} for k, (c, p) in settings.items()}}
        for i, s, settings in rows
    ]
    (folder / "progress" / "d.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return folder


def test_columns_of_two_runs_are_paired_by_item(tmp_path) -> None:
    flags_a = [True, True, False, True, False, True]
    flags_b = [True, False, False, False, True, False]
    a = _run(tmp_path / "a", [(f"q{i}", "x", {"c2c_fp16": (f, "A")}) for i, f in enumerate(flags_a)])
    b = _run(
        tmp_path / "b", [(f"q{i}", "x", {"compressed": (f, "A" if f else "B")}) for i, f in enumerate(flags_b)][::-1]
    )
    rows = compare(
        {"fp16": correct_by_item(a, "d", "c2c_fp16", "x"), "int2": correct_by_item(b, "d", "compressed", "x")}
    )
    test = mcnemar(flags_b, flags_a)
    assert rows[1]["accuracy"] == 2 / 6 and rows[1]["p"] == test.p_value and rows[1]["only_this"] == test.n_only_a
    assert rows[1]["agreement"] == 2 / 6
    assert main(["d", f"fp16={a}:c2c_fp16", f"int2={b}:compressed", "--subject", "x"]) == 0


def test_different_items_or_a_missing_setting_are_refused(tmp_path, capsys) -> None:
    a = _run(tmp_path / "a", [("q1", "x", {"s": (True, "A")})])
    b = _run(tmp_path / "b", [("q2", "x", {"s": (True, "A")})])
    with pytest.raises(ValueError, match="items differ"):
        compare({"a": correct_by_item(a, "d", "s", None), "b": correct_by_item(b, "d", "s", None)})
    assert main(["d", f"a={a}:s", f"b={b}:nope"]) == 2
    assert "settings: no setting 'nope'" in capsys.readouterr().err
