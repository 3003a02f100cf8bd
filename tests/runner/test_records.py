"""python -m pytest tests/runner/test_records.py -q"""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.records import BatchPlan, ProgressError, ProgressLog, batch_plan, progress_sha256, read_progress


def test_append_then_read_round_trips(tmp_path: Path) -> None:
    log = ProgressLog(tmp_path / "p.jsonl")
    log.append([{"id": "a", "error": None}, {"id": "b", "error": "boom"}])
    log.append([{"id": "c", "error": None}])
    progress = read_progress(log.path)
    assert [r["id"] for r in progress.records] == ["a", "b", "c"]
    assert progress.n_errors == 1 and not progress.torn_tail


def test_torn_last_line_is_ignored_then_truncated_before_appending(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    log = ProgressLog(path)
    log.append([{"id": "a"}])
    with open(path, "a") as handle:
        handle.write('{"id": "b", "sett')
    progress = read_progress(path)
    assert progress.done_ids == {"a"} and progress.torn_tail
    log.open()
    log.append([{"id": "b"}])
    assert [r["id"] for r in read_progress(path).records] == ["a", "b"]


def test_corrupt_middle_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a"}\nnot json\n{"id": "c"}\n')
    with pytest.raises(ProgressError, match=r"p.jsonl:2: corrupt progress line"):
        read_progress(path)


def test_duplicate_sample_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a"}\n{"id": "a"}\n')
    with pytest.raises(ProgressError, match=r"p.jsonl:2: sample 'a' recorded twice"):
        read_progress(path)


def test_missing_file_is_empty(tmp_path: Path) -> None:
    assert read_progress(tmp_path / "none.jsonl").records == []


def test_batch_plan_is_stored_once_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "mini.batches.json"
    plan = batch_plan(path, ["c", "a", "b", "d", "e"], 2)
    assert plan.batches == [["c", "a"], ["b", "d"], ["e"]]
    assert batch_plan(path, ["a", "b", "c", "d", "e"], 2) == plan  # the stored order wins over a new ordering


@pytest.mark.parametrize(
    "content, ids, size, expect",
    [
        (
            '{"schema": 1, "batch_size": 2, "batches": [["a", "b"]]}',
            ["a", "b"],
            3,
            "batch_size: 2, but the manifest says 3",
        ),
        ('{"schema": 1, "batch_size": 2, "batches": [["a", "b"]]}', ["a", "c"], 2, "batches: the planned sample ids"),
        ('{"schema": 1, "batch_size": 2, "batches": [["a", "a"]]}', ["a"], 2, "batches: the planned sample ids"),
        ('{"schema": 1, "batch_size": 1, "batches": [["a", "b"]]}', ["a", "b"], 1, "batches: not a list of batches"),
        ('{"schema": 7}', ["a"], 1, "schema: not a batch plan"),
        ("{not json", ["a"], 1, "unreadable batch plan"),
    ],
)
def test_a_bad_batch_plan_is_refused_naming_file_and_field(tmp_path: Path, content, ids, size, expect) -> None:
    path = tmp_path / "mini.batches.json"
    path.write_text(content)
    with pytest.raises(ProgressError, match=f"mini.batches.json: {expect}"):
        batch_plan(path, ids, size)


def test_whole_batches_stop_at_a_partly_written_batch_and_keep_cuts_it_off(tmp_path: Path) -> None:
    plan = BatchPlan(2, [["a", "b"], ["c", "d"], ["e"]])
    log = ProgressLog(tmp_path / "p.jsonl")
    log.append([{"id": "b"}, {"id": "a"}])
    log.append([{"id": "c"}])  # the kill came between the lines of the second batch
    progress = log.open()
    assert plan.whole_batches(progress.records) == (1, 2)
    kept = log.keep(progress, 2)
    assert [r["id"] for r in kept.records] == ["b", "a"] == [r["id"] for r in read_progress(log.path).records]
    assert log.path.read_bytes().count(b"\n") == 2 and kept.valid_nbytes == log.path.stat().st_size


def test_progress_sha256_covers_the_complete_lines_only(tmp_path: Path) -> None:
    log = ProgressLog(tmp_path / "p.jsonl")
    log.append([{"id": "a"}])
    whole = progress_sha256(log.path)
    with open(log.path, "a") as handle:
        handle.write('{"id": "b", "se')
    assert progress_sha256(log.path) == whole
    log.open()
    log.append([{"id": "b"}])
    assert progress_sha256(log.path) != whole
