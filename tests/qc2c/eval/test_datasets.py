"""Multiple-choice datasets: bundled mini set, local-file copies, ARC key mapping, mmlu-redux rules, offline misses.

python -m pytest tests/qc2c/eval/test_datasets.py -q
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qc2c.eval.datasets import DATASETS, DatasetError, DatasetUnavailable, fingerprint, load_mc
from qc2c.plugins import UnknownPlugin

REPO_ROOT = Path(__file__).resolve().parents[3]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _arc_row(rid: str, labels: list[str], answer: str) -> dict:
    texts = [f"option {i}" for i in range(len(labels))]
    return {"id": rid, "question": f"question {rid}?", "choices": {"text": texts, "label": labels}, "answerKey": answer}


def test_registered_names_are_the_agreed_ones():
    assert DATASETS.names() == ("arc_challenge", "demo", "mini", "mmlu_redux", "openbookqa")
    with pytest.raises(UnknownPlugin, match="did you mean 'openbookqa'"):
        DATASETS.get("openbook")


def test_mini_set_loads_through_datasets_with_valid_answers():
    data = load_mc("mini")
    assert len(data.items) == data.n_total >= 60
    assert len({item.id for item in data.items}) == len(data.items)
    for item in data.items:
        assert item.labels == ["A", "B", "C", "D"] and len(item.choices) == 4
        assert item.answer in item.labels
        assert len(set(item.choices)) == 4, item.id
    counts = {letter: sum(item.answer == letter for item in data.items) for letter in "ABCD"}
    assert min(counts.values()) >= len(data.items) // 5, counts  # answers spread over all four letters
    assert data.fingerprint == fingerprint(data.items) == load_mc("mini").fingerprint


def test_limit_takes_first_n_or_a_range_and_changes_the_fingerprint():
    full = load_mc("mini")
    first = load_mc("mini", limit=5)
    window = load_mc("mini", limit=(10, 20))
    assert first.items == full.items[:5] and first.n_total == full.n_total
    assert window.items == full.items[10:20]
    assert len({full.fingerprint, first.fingerprint, window.fingerprint}) == 3
    assert any("reaches past" in note for note in load_mc("mini", limit=500).notes)


@pytest.mark.parametrize("limit", [0, -1, True, (5, 5), (3, 1), (1, 2, 3), "10", 2.5])
def test_bad_limit_says_what_is_allowed(limit):
    with pytest.raises(ValueError, match=r"limit: .* \(allowed: null, a positive int N, or \[start, end\)"):
        load_mc("mini", limit=limit)


def test_mini_has_only_a_test_split():
    with pytest.raises(DatasetUnavailable, match="only the split 'test'"):
        load_mc("mini", split="train")


def test_arc_numeric_keys_are_mapped_and_every_row_kept(tmp_path, monkeypatch):
    rows = [
        _arc_row("a1", ["A", "B", "C", "D"], "B"),
        _arc_row("a2", ["1", "2", "3", "4"], "3"),
        _arc_row("a3", ["A", "B", "C", "D", "E"], "E"),
        _arc_row("a4", ["A", "B", "C"], "A"),
        _arc_row("a5", ["1", "2", "3", "4"], "1"),
    ]
    _write_jsonl(tmp_path / "arc_challenge" / "test.jsonl", rows)
    monkeypatch.setenv("QC2C_DATA_DIR", str(tmp_path))
    data = load_mc("arc_challenge")
    assert [item.id for item in data.items] == ["a1", "a2", "a3", "a4", "a5"]
    assert data.items[1].labels == ["A", "B", "C", "D"] and data.items[1].answer == "C"
    assert data.items[4].answer == "A"
    assert data.items[2].labels[-1] == "E" and data.items[2].answer == "E"
    assert data.items[3].labels == ["A", "B", "C"]
    assert any("mapped 1-4 -> A-D in 2 of 5 rows" in note for note in data.notes), data.notes
    assert any("2 rows have 3 or 5 options" in note for note in data.notes), data.notes
    assert any(str(tmp_path / "arc_challenge") in note for note in data.notes)


def test_mmlu_redux_skips_and_relabels_as_c2c(tmp_path, monkeypatch):
    def row(q, answer, error_type, correct=None):
        return {
            "question": q,
            "choices": ["w", "x", "y", "z"],
            "answer": answer,
            "error_type": error_type,
            "correct_answer": correct,
            "source": "s",
            "potential_reason": None,
        }

    anatomy = [
        row("ok", 0, "ok"),
        row("no answer", 1, "no_correct_answer"),
        row("expert", 2, "expert"),
        row("digit fix", 0, "wrong_groundtruth", "2"),
        row("letter fix", 0, "wrong_groundtruth", "D"),
        row("no fix given", 1, "wrong_groundtruth", None),
        row("unclear", 3, "bad_question_clarity"),
    ]
    _write_jsonl(tmp_path / "mmlu_redux" / "anatomy" / "test.jsonl", anatomy)
    _write_jsonl(tmp_path / "mmlu_redux" / "virology" / "test.jsonl", [row("v", 2, "ok"), row("v2", 0, "expert")])
    monkeypatch.setenv("QC2C_DATA_DIR", str(tmp_path))
    data = load_mc("mmlu_redux")
    got = {item.question: (item.answer, item.subject, item.id) for item in data.items}
    assert got == {
        "ok": ("A", "anatomy", "anatomy/0"),
        "digit fix": ("C", "anatomy", "anatomy/3"),
        "letter fix": ("D", "anatomy", "anatomy/4"),
        "no fix given": ("B", "anatomy", "anatomy/5"),
        "unclear": ("D", "anatomy", "anatomy/6"),
        "v": ("C", "virology", "virology/0"),
    }
    assert data.n_total == 6
    assert "skipped 1 rows with error_type no_correct_answer" in data.notes
    assert "skipped 2 rows with error_type expert" in data.notes
    assert "2 wrong_groundtruth rows scored against correct_answer" in data.notes
    assert any("2 of 57 configs present" in note for note in data.notes), data.notes


def test_openbookqa_reads_parquet_copies(tmp_path, monkeypatch):
    import datasets

    rows = [
        {
            "id": "7-980",
            "question_stem": "The sun is responsible for",
            "answerKey": "D",
            "choices": {"text": ["a", "b", "c", "plants sprouting"], "label": ["A", "B", "C", "D"]},
        }
    ]
    (tmp_path / "openbookqa").mkdir()
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "openbookqa" / "test-00000-of-00001.parquet"))
    monkeypatch.setenv("QC2C_DATA_DIR", str(tmp_path))
    data = load_mc("openbookqa")
    assert [(i.id, i.question, i.answer) for i in data.items] == [("7-980", "The sun is responsible for", "D")]


def test_bad_row_names_file_line_and_field(tmp_path, monkeypatch):
    rows = [_arc_row("ok", ["A", "B", "C", "D"], "A"), _arc_row("bad", ["A", "B", "C", "D"], "F")]
    path = _write_jsonl(tmp_path / "arc_challenge" / "test.jsonl", rows)
    monkeypatch.setenv("QC2C_DATA_DIR", str(tmp_path))
    with pytest.raises(DatasetError, match=rf"^{path}:2: answerKey: 'F' is not one of the labels A, B, C, D$"):
        load_mc("arc_challenge")


def test_bad_mmlu_answer_names_file_line_and_field(tmp_path, monkeypatch):
    row = {"question": "q", "choices": ["a", "b"], "answer": "x", "error_type": "ok", "correct_answer": None}
    path = _write_jsonl(tmp_path / "mmlu_redux" / "anatomy" / "test.jsonl", [row])
    monkeypatch.setenv("QC2C_DATA_DIR", str(tmp_path))
    with pytest.raises(DatasetError, match=rf"^{path}:1: answer: expected an integer, got 'x'$"):
        load_mc("mmlu_redux")


def test_local_folder_without_the_split_is_an_error(tmp_path, monkeypatch):
    _write_jsonl(tmp_path / "openbookqa" / "train.jsonl", [])
    monkeypatch.setenv("QC2C_DATA_DIR", str(tmp_path))
    with pytest.raises(DatasetUnavailable, match="no files for split 'test'"):
        load_mc("openbookqa")


def test_offline_cache_miss_names_the_dataset_and_the_prefetch_command(tmp_path):
    """Run in a fresh interpreter: `datasets` reads HF_HUB_OFFLINE and the cache location at import."""
    env = {k: v for k, v in os.environ.items() if k != "QC2C_DATA_DIR"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    code = (
        "from qc2c.eval.datasets import load_mc, DatasetUnavailable\n"
        "try:\n    load_mc('openbookqa')\nexcept DatasetUnavailable as err:\n    print(err)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    message = out.stdout.strip()
    assert "allenai/openbookqa, config main, split test" in message
    assert "offline mode is on" in message
    assert "`python -m qc2c.prefetch datasets openbookqa`" in message
    assert "\n" not in message
