# python -m pytest tests/runner/test_latent_results.py -q
from __future__ import annotations

import pytest

from runner.summarize import _qa


def record(subject, correct, em, first_ok, nll, with_qa=True):
    row = {"correct": correct, "pred": "A", "option_probs": {"A": 1.0}}
    if with_qa:
        row.update(em=em, f1=float(em), first_ok=first_ok, nll_per_token=nll)
    return {"id": f"x{len(subject)}", "subject": subject, "settings": {"latent": row, "receiver": dict(row)}}


def test_short_answer_scores_are_means_overall_and_per_subject():
    records = [
        record("shared", True, True, True, 0.5),
        record("shared", True, False, True, 1.5),
        record("sharer_only", False, False, False, 3.0),
    ]
    qa = _qa(records, "latent")
    assert qa.n == 3
    assert qa.exact_match == pytest.approx(1 / 3) and qa.first_acc == pytest.approx(2 / 3)
    assert qa.nll_per_token == pytest.approx(5 / 3)
    assert qa.subjects["shared"].exact_match == 0.5 and qa.subjects["sharer_only"].first_acc == 0.0


def test_settings_without_short_answers_have_no_qa_block_at_all():
    records = [record("shared", True, 0, 0, 0, with_qa=False), record("sharer_only", True, 0, 0, 0, with_qa=False)]
    assert _qa(records, "receiver") is None
    from runner.results import SettingResult

    fields = {"n": 1, "n_correct": 1, "n_errors": 0, "accuracy": 1.0, "ci95": [0.2, 1.0]}
    fields.update(bytes=None, n_tokens_sent=None, n_tokens_prompt_mean=None, compression_ratio=None, fidelity=None)
    dumped = SettingResult(**fields).model_dump(mode="json")
    assert "qa" not in dumped  # rows written before the field keep their seals
