"""python -m pytest tests/runner/test_records.py -q"""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.records import ProgressError, ProgressLog, read_progress


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
