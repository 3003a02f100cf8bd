"""Per-subject results: counts and paired tests on each subject's own items, only for a few subjects."""

from __future__ import annotations

from runner.summarize import setting_result


def _records(pattern: list[tuple[str, bool, bool]]) -> list[dict]:
    return [
        {
            "id": str(i),
            "subject": subject,
            "settings": {"receiver": {"correct": r, "pred": "A"}, "c2c_fp16": {"correct": c, "pred": "A"}},
        }
        for i, (subject, r, c) in enumerate(pattern)
    ]


def test_subjects_count_their_own_items_and_pair_within_them():
    records = _records(
        [("shared", True, True)] * 20 + [("sharer_only", False, True)] * 15 + [("sharer_only", False, False)] * 5
    )
    result = setting_result(records, "c2c_fp16", ["receiver", "c2c_fp16"], seed=0)
    shared, only = result.subjects["shared"], result.subjects["sharer_only"]
    assert (shared.n, shared.n_correct, only.n, only.n_correct) == (20, 20, 20, 15)
    assert only.paired["receiver"].diff == 0.75 and only.paired["receiver"].n_discordant == 15
    assert only.paired["receiver"].mcnemar_p < 0.001
    assert shared.paired["receiver"].diff == 0.0 and shared.paired["receiver"].mcnemar_p == 1.0


def test_no_subject_block_for_one_subject_or_missing_subjects():
    one = _records([("shared", True, True)] * 4)
    assert setting_result(one, "c2c_fp16", ["receiver", "c2c_fp16"], seed=0).subjects is None
    mixed = _records([("shared", True, True), (None, True, False), ("sharer_only", False, True)])
    assert setting_result(mixed, "c2c_fp16", ["receiver", "c2c_fp16"], seed=0).subjects is None


def test_the_run_summary_prints_a_subject_table():
    from types import SimpleNamespace

    from rich.console import Console

    from runner.progress_ui import subjects_table

    records = _records([("shared", True, True)] * 4 + [("sharer_only", False, True)] * 4)
    settings = {s: setting_result(records, s, ["receiver", "c2c_fp16"], seed=0) for s in ("receiver", "c2c_fp16")}
    result = SimpleNamespace(dataset=SimpleNamespace(name="demo"), settings=settings)
    console = Console(width=160, record=True)
    console.print(subjects_table([result]))
    text = console.export_text()
    assert "sharer_only" in text and "1.000 (4) · +1.000" in text
    assert subjects_table([SimpleNamespace(dataset=result.dataset, settings={})]) is None
