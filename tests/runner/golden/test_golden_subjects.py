"""The summary's per-subject table: one cell per subject with accuracy, CI and the paired test vs receiver."""

from __future__ import annotations

from types import SimpleNamespace

from runner.golden.subjects import subject_lines
from runner.summarize import setting_result


def _row(setting: str, records: list[dict]) -> SimpleNamespace:
    metrics = setting_result(records, setting, ["receiver", "c2c_fp16"], seed=0)
    return SimpleNamespace(manifest="demo", setting=setting, family=setting, metrics=metrics)


def test_subject_table_has_a_cell_per_subject_and_nothing_without_subjects():
    records = [
        {"id": str(i), "subject": s, "settings": {"receiver": {"correct": r}, "c2c_fp16": {"correct": c}}}
        for i, (s, r, c) in enumerate([("shared", True, True)] * 10 + [("sharer_only", False, True)] * 10)
    ]
    lines = subject_lines([(_row("receiver", records), 3), (_row("c2c_fp16", records), 1)])
    assert lines[0] == "Per subject:" and "shared: accuracy" in lines[2] and "sharer_only: accuracy" in lines[2]
    assert lines[4].startswith("| demo (+2 more) | receiver |") and "reference" in lines[4]
    assert "1.000 [" in lines[5] and "+1.000 (0.002)" in lines[5]
    plain = [{"id": "0", "settings": {"receiver": {"correct": True}, "c2c_fp16": {"correct": True}}}]
    assert subject_lines([(_row("receiver", plain), 1)]) == []
