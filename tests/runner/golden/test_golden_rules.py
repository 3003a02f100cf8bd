"""One bad row per refusal reason (cases/<rule>.json): python -m pytest tests/runner/golden/test_golden_rules.py -q"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from golden_factory import golden_cli as main

from runner.golden.integrity import file_sha256, seal
from runner.golden.merge import GOLDEN_JSON, dump_golden, rows_from_result
from runner.golden.validate import ALLOWABLE, GOLDEN_SCHEMA, RULES, GoldenFile, differences, resolve_allow
from runner.results import load_result

CASES = Path(__file__).parent / "cases"
CASE_NAMES = sorted(p.stem for p in CASES.glob("*.json"))


def _case(name: str) -> dict:
    return json.loads((CASES / f"{name}.json").read_text())


def _merge(factory, *run_dirs, extra=()) -> int:
    argv = ["golden", "merge", *map(str, run_dirs), "--golden-dir", str(factory.golden_dir)]
    return main(argv + ["--runs-dir", str(factory.runs_dir), "--no-plots", *extra])


def _bad_run(factory, case: dict) -> Path:
    if case.get("merge_first"):
        assert _merge(factory, factory.make()) == 0
    return factory.make(
        case.get("second_name", "smoke"),
        patch=case.get("patch"),
        status=case.get("status", "complete"),
        provenance=case.get("provenance", True),
    )


def test_every_rule_has_a_case_file_and_every_case_a_rule():
    assert CASE_NAMES == sorted(RULES)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_merge_refuses_the_bad_row_naming_file_rule_and_reason(name, run_factory, capsys):
    case = _case(name)
    run_dir = _bad_run(run_factory, case)
    before = (run_factory.golden_dir / GOLDEN_JSON).read_bytes() if case.get("merge_first") else None
    capsys.readouterr()
    assert _merge(run_factory, run_dir) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"{run_dir}/results/mini.json: {name}: ")]
    assert lines, err
    assert any(case["expect"] in line for line in lines), err
    assert "Traceback" not in err
    after = (run_factory.golden_dir / GOLDEN_JSON).read_bytes() if before is not None else None
    assert after == before  # nothing written (or the old store untouched)
    if before is None:
        assert not (run_factory.golden_dir / GOLDEN_JSON).exists()


@pytest.mark.parametrize("name", [n for n in CASE_NAMES if _case(n)["allow"]])
def test_allow_waives_the_rule_and_records_it_in_the_row(name, run_factory, capsys):
    case = _case(name)
    run_dir = _bad_run(run_factory, case)
    assert _merge(run_factory, run_dir, extra=["--allow", case["allow"]]) == 0, capsys.readouterr().err
    rows = json.loads((run_factory.golden_dir / GOLDEN_JSON).read_text())["rows"]
    waived_rows = [row for row in rows.values() if row["allowed"]]
    assert waived_rows and all(row["allowed"] == [name] for row in waived_rows)
    assert all(case["expect"] in " ".join(row["waived"]) for row in waived_rows)
    assert main(["golden", "check", "--golden-dir", str(run_factory.golden_dir)]) == 0


@pytest.mark.parametrize("name", [n for n in CASE_NAMES if _case(n)["row_only"]])
def test_golden_check_catches_the_bad_row_written_by_hand(name, run_factory, capsys):
    """The row-only rules also guard the store itself: a bad row that bypassed merge fails `golden check`."""
    case = _case(name)
    run_dir = _bad_run(run_factory, case)
    path = run_dir / "results" / "mini.json"
    rows = [seal(row) for row in rows_from_result(load_result(path), str(run_dir), file_sha256(path))]
    golden = GoldenFile.model_validate({"schema": GOLDEN_SCHEMA, "rows": {row.key: row for row in rows}})
    run_factory.golden_dir.mkdir()
    (run_factory.golden_dir / GOLDEN_JSON).write_text(dump_golden(golden))
    assert main(["golden", "check", "--golden-dir", str(run_factory.golden_dir)]) == 2
    err = capsys.readouterr().err
    assert f": {name}: " in err and case["expect"] in err, err


def test_rules_that_must_never_be_waived_are_refused_as_allow_values():
    rules, problems = resolve_allow(["dirty", "fuser_was_loaded", "run_is_complete"])
    assert rules == ["tree_is_clean"]
    assert len(problems) == 2 and "--allow fuser_was_loaded: cannot be waived" in problems[0]
    assert "fuser_was_loaded" not in ALLOWABLE and "row_has_provenance" not in ALLOWABLE


def test_differences_name_every_changed_leaf_and_nothing_else() -> None:
    old = {"metrics": {"accuracy": 0.5, "fidelity": {"mean_kl": 0.0164318574}}, "n": 70, "gone": 1}
    new = {"metrics": {"accuracy": 0.5, "fidelity": {"mean_kl": 0.0164318571}}, "n": 70, "added": [1, 2]}
    assert differences(old, new) == [
        "added: (absent) -> [1, 2]",
        "gone: 1 -> (absent)",
        "metrics.fidelity.mean_kl: 0.0164318574 -> 0.0164318571",
    ]
    assert differences(old, old) == []
