"""Golden merge: python -m pytest tests/runner/golden/test_golden_merge.py -q"""

from __future__ import annotations

import json
import multiprocessing

from golden_factory import golden_cli

from runner.golden import check_golden, load_golden, merge_runs
from runner.golden.merge import GOLDEN_JSON, SUMMARY_MD, discover_complete_runs
from runner.results import BASELINES, COMPRESSED


def _rows(factory) -> dict:
    return json.loads((factory.golden_dir / GOLDEN_JSON).read_text())["rows"]


def test_merge_writes_one_row_per_run_dataset_and_setting(run_factory):
    run_dir = run_factory.make("m2_int4", "m2", scheme="int4", datasets=("mini", "openbookqa"))
    report = merge_runs([run_dir], run_factory.golden_dir, [], False)
    assert report.ok and len(report.added) == 2 * 3
    rows = _rows(run_factory)
    result = json.loads((run_dir / "results" / "mini.json").read_text())
    key = f"{result['run_key']}/mini/{COMPRESSED}"
    row = rows[key]
    assert row["metrics"] == result["settings"][COMPRESSED]
    assert row["family"] == "int4" and row["manifest"] == "m2_int4" and row["milestone"] == "m2"
    assert row["fuser"]["sha256"] == result["fuser"]["sha256"]
    assert row["dataset"]["fingerprint"] == result["dataset"]["fingerprint"]
    assert row["provenance"]["commit"] == result["provenance"]["commit"]
    assert row["run_dir"] == f"runs/m2/{run_dir.name}"  # relative to the repository (golden/..)
    assert row["precision"] == result["precision"]
    assert rows[f"{result['run_key']}/mini/receiver"]["precision"] is None
    assert {r["setting"] for r in rows.values()} == {COMPRESSED, "receiver", "c2c_fp16"} <= {COMPRESSED, *BASELINES}
    assert (run_factory.golden_dir / SUMMARY_MD).is_file()
    assert check_golden(run_factory.golden_dir) == []


def test_merging_the_same_run_twice_is_byte_identical(run_factory):
    run_dir = run_factory.make()
    assert merge_runs([run_dir], run_factory.golden_dir, [], False).ok
    first = [(run_factory.golden_dir / name).read_bytes() for name in (GOLDEN_JSON, SUMMARY_MD)]
    report = merge_runs([run_dir, run_dir], run_factory.golden_dir, [], False)
    assert report.ok and report.added == [] and report.replaced == [] and len(report.unchanged) == 6
    assert [(run_factory.golden_dir / name).read_bytes() for name in (GOLDEN_JSON, SUMMARY_MD)] == first


def test_merge_order_does_not_change_the_files(run_factory, tmp_path):
    runs = [run_factory.make("m2_int8", "m2"), run_factory.make("m2_int4", "m2", scheme="int4")]
    other = tmp_path / "other_golden"
    assert merge_runs(runs, run_factory.golden_dir, [], False).ok
    assert merge_runs(runs[1:], other, [], False).ok and merge_runs(runs[:1], other, [], False).ok
    for name in (GOLDEN_JSON, SUMMARY_MD):
        assert (run_factory.golden_dir / name).read_bytes() == (other / name).read_bytes()


def test_conflict_reports_both_rows_and_keeps_the_old(run_factory, capsys):
    original = run_factory.make("smoke")
    assert merge_runs([original], run_factory.golden_dir, [], False).ok
    before = (run_factory.golden_dir / GOLDEN_JSON).read_bytes()
    rerun = run_factory.make("smoke_again", patch={"settings.compressed.compression_ratio": 1.25})
    report = merge_runs([rerun], run_factory.golden_dir, [], False)
    assert not report.ok
    (line,) = report.problems
    assert (
        "no_conflict_with_existing" in line
        and f"runs/smoke/{original.name}" in line
        and f"runs/smoke/{rerun.name}" in line
    )
    assert (run_factory.golden_dir / GOLDEN_JSON).read_bytes() == before


def test_replace_takes_the_new_row_and_says_so(run_factory):
    original = run_factory.make("smoke")
    assert merge_runs([original], run_factory.golden_dir, [], False).ok
    rerun = run_factory.make("smoke_again", patch={"settings.compressed.compression_ratio": 1.25})
    report = merge_runs([rerun], run_factory.golden_dir, [], True)
    assert report.ok and len(report.replaced) == 1 and len(report.notes) == 1
    assert report.notes[0].endswith(" -> 1.25; the new row replaces it"), report.notes
    (row,) = [r for r in _rows(run_factory).values() if r["setting"] == COMPRESSED]
    assert row["metrics"]["compression_ratio"] == 1.25 and row["manifest"] == "smoke_again"


def test_a_rerun_that_differs_only_in_timing_is_not_a_conflict(run_factory):
    assert merge_runs([run_factory.make("smoke")], run_factory.golden_dir, [], False).ok
    rerun = run_factory.make("smoke_again", patch={"settings.compressed.timing.encode_s": 9.0})
    report = merge_runs([rerun], run_factory.golden_dir, [], False)
    assert report.ok and len(report.unchanged) == 3


def test_one_bad_run_refuses_the_whole_merge_listing_every_problem(run_factory):
    good = run_factory.make("good", "m2")
    bad = run_factory.make("bad", "m2", scheme="int4", patch={"provenance.dirty": True, "fuser.loaded": False})
    report = merge_runs([good, bad], run_factory.golden_dir, [], False)
    rules = {line.split(": ")[1] for line in report.problems}
    assert rules == {"tree_is_clean", "fuser_was_loaded"}
    assert all(line.startswith(f"{bad}/results/mini.json: ") for line in report.problems)
    assert not (run_factory.golden_dir / GOLDEN_JSON).exists()


def test_invalid_results_file_is_a_schema_problem_naming_the_field(run_factory):
    run_dir = run_factory.make()
    path = run_dir / "results" / "mini.json"
    data = json.loads(path.read_text())
    data["settings"]["compressed"]["accuracy"] = 0.99
    path.write_text(json.dumps(data))
    report = merge_runs([run_dir], run_factory.golden_dir, [], False)
    assert any(line.startswith(f"{path}: schema: settings.compressed: ") for line in report.problems), report.problems


def test_missing_registry_is_reported_not_assumed_complete(run_factory):
    run_dir = run_factory.make()
    (run_factory.runs_dir / "registry.json").unlink()
    report = merge_runs([run_dir], run_factory.golden_dir, [], False)
    assert any("run_is_complete" in p and "registry not found" in p for p in report.problems)


def test_merge_all_takes_only_complete_runs(run_factory, capsys):
    done = run_factory.make("done", "m2")
    run_factory.make("busy", "m2", scheme="int4", status="running")
    found, notes = discover_complete_runs(run_factory.runs_dir)
    assert found == [done] and len(notes) == 1 and "running" in notes[0]
    argv = [
        "golden",
        "merge",
        "--all",
        "--runs-dir",
        str(run_factory.runs_dir),
        "--golden-dir",
        str(run_factory.golden_dir),
    ]
    assert golden_cli(argv + ["--no-plots"]) == 0
    assert {r["manifest"] for r in _rows(run_factory).values()} == {"done"}


def test_cli_refusal_prints_plain_lines_and_exits_2(run_factory, capsys):
    run_dir = run_factory.make(patch={"provenance.dirty": True})
    argv = ["golden", "merge", str(run_dir), "--golden-dir", str(run_factory.golden_dir), "--no-plots"]
    assert golden_cli(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"{run_dir}/results/mini.json: tree_is_clean: ")
    assert err[-1] == "golden merge: refused, nothing written"
    assert golden_cli(argv + ["--allow", "fuser_was_loaded"]) == 2
    assert "cannot be waived" in capsys.readouterr().err


def _merge_one(args: tuple[str, str]) -> bool:
    run_dir, golden_dir = args
    return merge_runs([run_dir], golden_dir, [], False).ok


def test_sixteen_concurrent_merges_lose_nothing(run_factory):
    run_dirs = [str(run_factory.make(f"m3_keep{i:02d}", "m3", keep=round(1 - i / 20, 2), seed=i)) for i in range(16)]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(16) as pool:
        assert pool.map(_merge_one, [(d, str(run_factory.golden_dir)) for d in run_dirs]) == [True] * 16
    golden = load_golden(run_factory.golden_dir / GOLDEN_JSON)
    assert len(golden.rows) == 16 * 3
    assert {row.manifest for row in golden.rows.values()} == {f"m3_keep{i:02d}" for i in range(16)}
    assert check_golden(run_factory.golden_dir) == []
    assert sorted(p.name for p in run_factory.golden_dir.iterdir()) == [GOLDEN_JSON, GOLDEN_JSON + ".lock", SUMMARY_MD]


def test_compressed_row_without_measured_bytes_is_refused_but_c2c_fp16_may_have_none(run_factory):
    no_fp16_bytes = run_factory.make("a", "m2", patch={"settings.c2c_fp16.bytes": None})
    assert merge_runs([no_fp16_bytes], run_factory.golden_dir, [], False).ok
    no_bytes = run_factory.make("b", "m2", scheme="int4", patch={"settings.compressed.bytes": None})
    report = merge_runs([no_bytes], run_factory.golden_dir, [], False)
    assert any(": bytes_consistent: compressed: no measured message bytes" in p for p in report.problems), (
        report.problems
    )


def test_baseline_only_run_without_kv_merges_its_text_rows(run_factory):
    def baseline_only(data):
        data["kv"] = None
        data["precision"] = None
        data["fuser"] = {"source": None, "sha256": None, "loaded": False}
        data["settings"] = {"receiver": data["settings"]["receiver"]}
        data["settings"]["receiver"]["paired"] = {}
        data["settings"]["receiver"]["fidelity"] = None

    run_dir = run_factory.make("m0_receiver", "m0", mutate=baseline_only)
    report = merge_runs([run_dir], run_factory.golden_dir, [], False)
    assert report.ok, report.problems
    (row,) = _rows(run_factory).values()
    assert row["setting"] == "receiver" and row["family"] == "receiver" and row["kv"] is None


def test_merge_all_on_a_fresh_clone_merges_nothing_and_says_why(tmp_path, capsys):
    argv = ["golden", "merge", "--all", "--runs-dir", str(tmp_path / "runs"), "--golden-dir", str(tmp_path / "golden")]
    assert golden_cli(argv) == 0
    err = capsys.readouterr().err
    assert "run registry not found" in err and "no complete runs to merge" in err
    assert not (tmp_path / "golden").exists()


def test_run_folder_without_results_is_a_problem(run_factory):
    run_dir = run_factory.runs_dir / "m2" / "empty-0000000000"
    run_dir.mkdir(parents=True)
    report = merge_runs([run_dir], run_factory.golden_dir, [], False)
    assert report.problems == [f"{run_dir}: no results/*.json (has the run finished?)"]
