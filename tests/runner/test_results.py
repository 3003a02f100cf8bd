"""results/<dataset>.json model: python -m pytest tests/runner/test_results.py -q"""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from runner.results import BASELINES, COMPRESSED, DatasetResult, ResultsError, load_result, write_result


def _setting(n: int = 10, n_correct: int = 6, with_bytes: bool = True) -> dict:
    return {
        "n": n,
        "n_correct": n_correct,
        "n_errors": 0,
        "accuracy": n_correct / n,
        "ci95": [0.3, 0.85],
        "bytes": {
            "mean": 100.0,
            "p50": 100.0,
            "p95": 120.0,
            "breakdown": {"payload": 80.0, "scales": 10.0, "indices": 0.0, "header": 10.0},
        }
        if with_bytes
        else None,
        "n_tokens_sent": {"mean": 20.0, "p50": 20.0, "p95": 25.0} if with_bytes else None,
        "n_tokens_prompt_mean": 20.0,
        "compression_ratio": 4.0 if with_bytes else None,
        "fidelity": None,
        "paired": {},
    }


def _result() -> dict:
    return {
        "schema": 1,
        "run_key": "a" * 64,
        "manifest": "smoke",
        "milestone": "smoke",
        "kind": "eval",
        "pair": {
            "receiver": "tiny:qwen3",
            "sharer": "tiny:qwen2",
            "alignment": "none",
            "receiver_revision": "main",
            "sharer_revision": "main",
        },
        "fuser": {"source": "tiny:qwen3+qwen2", "sha256": "b" * 64, "loaded": True},
        "kv": {"quant": {"scheme": "int8"}},
        "dataset": {
            "name": "mini",
            "split": "test",
            "fingerprint": "f" * 16,
            "n_total": 10,
            "limit": None,
            "n_declared": None,
            "notes": [],
        },
        "protocol": "logits",
        "settings": {COMPRESSED: _setting(), "receiver": _setting(n_correct=4, with_bytes=False)},
        "bytes_closed_form_drift": 0,
        "precision": {"receiver": ["int8", "int8"], "sharer": ["int8", None]},
        "provenance": {
            "commit": "c" * 40,
            "dirty": False,
            "image_digest": None,
            "created": "2026-01-01T00:00:00+00:00",
        },
    }


def test_round_trip_through_file_is_identical(tmp_path):
    result = DatasetResult.model_validate(_result())
    write_result(tmp_path / "results" / "mini.json", result)
    again = load_result(tmp_path / "results" / "mini.json")
    assert again == result
    assert json.loads((tmp_path / "results" / "mini.json").read_text())["schema"] == 1
    assert again.dataset.n_expected == 10


def test_every_field_has_a_description():
    missing = []
    seen = set()

    def walk(model):
        if model in seen:
            return
        seen.add(model)
        for name, field in model.model_fields.items():
            if not field.description:
                missing.append(f"{model.__name__}.{name}")
            for arg in getattr(field.annotation, "__args__", ()) + (field.annotation,):
                if isinstance(arg, type) and hasattr(arg, "model_fields"):
                    walk(arg)

    walk(DatasetResult)
    assert missing == []


def test_accuracy_that_disagrees_with_counts_is_refused():
    data = _result()
    data["settings"][COMPRESSED]["accuracy"] = 0.9
    with pytest.raises(ValidationError, match="n_correct/n"):
        DatasetResult.model_validate(data)


def test_unknown_setting_names_the_allowed_ones():
    data = _result()
    data["settings"]["int4"] = _setting()
    with pytest.raises(ValidationError, match=", ".join(BASELINES)):
        DatasetResult.model_validate(data)


def test_declared_subset_is_the_expected_n():
    data = _result()
    data["dataset"].update(limit=5, n_declared=5)
    assert DatasetResult.model_validate(data).dataset.n_expected == 5


def test_load_result_lists_every_problem_with_file_and_field(tmp_path):
    data = _result()
    data["run_key"] = "nothex"
    data["settings"][COMPRESSED]["ci95"] = [0.9, 0.1]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ResultsError) as info:
        load_result(path)
    text = str(info.value)
    assert f"{path}: run_key:" in text
    assert f"{path}: settings.compressed.ci95:" in text


def test_load_result_reports_json_syntax_with_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n"schema": 1,\n}')
    with pytest.raises(ResultsError, match=rf"{path}:3: json:"):
        load_result(path)
