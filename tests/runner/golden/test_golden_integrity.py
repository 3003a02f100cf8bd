"""Hand edits of the golden store are refused: python -m pytest tests/runner/golden/test_golden_integrity.py -q

Each edit keeps the row self-consistent (the row-only rules pass): counts changed with their Wilson interval,
a halved KL, bytes halved with their breakdown, a waiver added by hand. The row's seal catches every one of
them; with the seal recomputed too, the run folder catches them (the row no longer is what its results file
says). A bare `Infinity` is not JSON. A row whose run folder is absent is named as not verified.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable

import pytest
from golden_factory import golden_cli, wilson

from runner.golden import check_golden, merge_runs
from runner.golden.integrity import content_sha256
from runner.golden.merge import GOLDEN_JSON
from runner.golden.validate import GoldenRow


def _counts_with_interval(row: dict) -> None:
    m = row["metrics"]
    m["n_correct"] += 3
    m["accuracy"] = m["n_correct"] / m["n"]
    m["ci95"] = list(wilson(m["n_correct"], m["n"]))


def _halved_kl(row: dict) -> None:
    row["metrics"]["fidelity"]["mean_kl"] /= 2


def _halved_bytes(row: dict) -> None:
    stats = row["metrics"]["bytes"]
    for key in ("mean", "p50", "p95"):
        stats[key] /= 2
    stats["breakdown"] = {k: v / 2 for k, v in stats["breakdown"].items()}


def _waiver(row: dict) -> None:
    row["allowed"] = ["tree_is_clean"]
    row["waived"] = ["tree_is_clean: the run's working tree was dirty (uncommitted changes)"]


EDITS: dict[str, Callable[[dict], None]] = {
    "counts_and_ci": _counts_with_interval,
    "halved_kl": _halved_kl,
    "halved_bytes": _halved_bytes,
    "waiver": _waiver,
}


def _merged(factory):
    run_dir = factory.make("smoke", "smoke", scheme="int4", keep=0.5)
    assert merge_runs([run_dir], factory.golden_dir, [], False).ok
    return run_dir, factory.golden_dir / GOLDEN_JSON


def _edit(path, edit: Callable[[dict], None], *, reseal: bool) -> str:
    data = json.loads(path.read_text())
    key, row = next((k, r) for k, r in sorted(data["rows"].items()) if r["setting"] == "compressed")
    edit(row)
    if reseal:  # what a careful hand editor would also have to do
        row["row_sha256"] = content_sha256(GoldenRow.model_validate(row))
    path.write_text(json.dumps(data, indent=2, sort_keys=True))
    return key


@pytest.mark.parametrize("name", sorted(EDITS))
def test_a_consistent_hand_edit_breaks_the_rows_seal(run_factory, name: str) -> None:
    _, path = _merged(run_factory)
    assert check_golden(run_factory.golden_dir) == []
    key = _edit(path, EDITS[name], reseal=False)
    problems = check_golden(run_factory.golden_dir)
    assert any(p.startswith(f"{path}: {key}: row_sha256: ") and "edited after the merge" in p for p in problems), (
        problems
    )


@pytest.mark.parametrize("name", sorted(EDITS))
def test_a_resealed_hand_edit_is_caught_by_the_run_folder(run_factory, name: str) -> None:
    _, path = _merged(run_factory)
    key = _edit(path, EDITS[name], reseal=True)
    problems = check_golden(run_factory.golden_dir)
    assert not any(": row_sha256: " in p for p in problems), problems
    assert any(f"{key}: results_sha256: the row differs from " in p or f"{key}: allowed: " in p for p in problems), (
        problems
    )


def test_a_hand_added_waiver_is_named_even_when_resealed(run_factory) -> None:
    _, path = _merged(run_factory)
    key = _edit(path, _waiver, reseal=True)
    problems = check_golden(run_factory.golden_dir)
    assert any(f"{key}: allowed: the row records waived problems" in p for p in problems), problems


def test_a_bare_infinity_is_not_json_and_names_its_line(run_factory, capsys) -> None:
    _, path = _merged(run_factory)
    lines = path.read_text().splitlines()
    n = next(i for i, line in enumerate(lines) if '"mean_kl":' in line)
    lines[n] = lines[n].split(":")[0] + ": Infinity" + ("," if lines[n].endswith(",") else "")
    path.write_text("\n".join(lines) + "\n")
    assert golden_cli(["golden", "check", "--golden-dir", str(run_factory.golden_dir)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:{n + 1}: json: non-standard value Infinity" in err and "Traceback" not in err


def test_rows_whose_run_folder_is_absent_are_named_not_verified_but_still_sealed(run_factory, capsys) -> None:
    run_dir, path = _merged(run_factory)
    shutil.rmtree(run_dir)
    argv = ["golden", "check", "--golden-dir", str(run_factory.golden_dir)]
    assert golden_cli(argv) == 0
    out = capsys.readouterr()
    assert out.err.count("not verified against its run folder") == 3 and "is not present" in out.err
    assert "3 row(s) not verified" in out.out
    _edit(path, _halved_kl, reseal=False)
    assert golden_cli(argv) == 2
    assert ": row_sha256: " in capsys.readouterr().err


def test_edited_progress_lines_or_results_file_are_caught_by_check(run_factory) -> None:
    run_dir, _ = _merged(run_factory)
    progress = run_dir / "progress" / "mini.jsonl"
    progress.write_text(progress.read_text().replace("mini-3", "mini-33"))
    assert any(": results_match_progress: " in p for p in check_golden(run_factory.golden_dir))
    results = run_dir / "results" / "mini.json"
    results.write_text(results.read_text().replace('"n_errors": 0', '"n_errors":0'))
    assert any("results_sha256: " in p and "changed after the merge" in p for p in check_golden(run_factory.golden_dir))


def test_merge_refuses_to_carry_a_hand_edited_row_forward(run_factory) -> None:
    _, path = _merged(run_factory)
    _edit(path, _halved_kl, reseal=False)
    before = path.read_bytes()
    report = merge_runs([run_factory.make("other", "smoke", scheme="int8")], run_factory.golden_dir, [], False)
    assert not report.ok and any(": row_sha256: " in p for p in report.problems), report.problems
    assert path.read_bytes() == before


def test_a_store_from_before_content_hashes_says_how_to_remake_it(run_factory) -> None:
    run_factory.golden_dir.mkdir()
    (run_factory.golden_dir / GOLDEN_JSON).write_text('{"schema": 1, "rows": {}}')
    [problem] = check_golden(run_factory.golden_dir)
    assert "schema: 1 is a store from before content hashes" in problem and "golden merge --all" in problem
