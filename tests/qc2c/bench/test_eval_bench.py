"""python -m pytest tests/qc2c/bench/test_eval_bench.py -q

The eval benchmark runs both paths on the same items and checks identical predictions in the same run; the
ratio itself depends on the machine, so it is printed, not asserted here.
"""

from __future__ import annotations

import json

import pytest
import torch

from qc2c.bench.eval import forward_floor, main, scorer_batches
from qc2c.eval.datasets import load_mc
from qc2c.eval.settings import build_scorers
from qc2c.fuser.sources import load_fuser
from qc2c.models.pair import load_pair


def test_bench_reports_both_rates_and_identical_predictions(capsys) -> None:
    assert main(["--n", "6", "--batch", "3", "--settings", "receiver", "compressed", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 6 and set(report["settings"]) == {"receiver", "compressed"}
    for r in report["settings"].values():
        assert r["identical_predictions"] is True
        assert r["batched_samples_per_s"] > 0 and r["one_at_a_time_samples_per_s"] > 0
        assert abs(r["ratio"] - r["batched_samples_per_s"] / r["one_at_a_time_samples_per_s"]) < 1e-9
    assert "ratio_ceiling" not in report["settings"]["receiver"]  # no fusion to bound
    c = report["settings"]["compressed"]
    assert abs(c["ratio_ceiling"] - c["forward_floor_samples_per_s"] / c["one_at_a_time_samples_per_s"]) < 1e-9


class Recorder:
    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, **kwargs) -> None:
        self.calls.append(kwargs)


def test_floor_runs_each_model_once_on_each_of_the_scorers_own_batches() -> None:
    pair = load_pair("tiny:qwen3", "tiny:qwen2")
    fuser = load_fuser("tiny:qwen3+qwen2")
    (scorer,) = build_scorers(
        ["c2c_fp16"], pair, fuser, None, protocol="logits", max_new_tokens=1, device="cpu"
    ).values()
    items = load_mc("mini", limit=5).items
    batches = scorer_batches(scorer, items, 2, "cpu")
    receiver, sharer = Recorder(), Recorder()
    assert forward_floor([receiver, sharer], batches, "cpu") > 0
    assert len(batches) == len(receiver.calls) == len(sharer.calls) == 3
    for call, start in zip(receiver.calls, (0, 2, 4)):
        expected = scorer.make_batch([scorer.prepare(it)[0] for it in items[start : start + 2]])
        assert torch.equal(call["input_ids"], expected.input_ids)
        assert torch.equal(call["attention_mask"], expected.attention_mask)
        assert call["logits_to_keep"] == 1 and call["use_cache"] is True


def test_bad_input_gets_one_line_and_exit_2(capsys) -> None:
    for argv, expected in [
        (["--dataset", "nosuch"], "unknown dataset 'nosuch'"),
        (["--receiver", "tiny:nope"], "unknown tiny model 'tiny:nope'"),
        (["--fuser", "tiny:nope"], "unknown tiny fuser 'tiny:nope'"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err, err
    with pytest.raises(SystemExit) as stop:
        main(["--batch", "0"])
    assert stop.value.code == 2 and "--batch: must be a positive integer, got 0" in capsys.readouterr().err


def test_one_run_mode_times_per_setting_against_shared_with_identical_rows(capsys) -> None:
    assert main(["--one-run", "--n", "6", "--batch", "3", "--repeats", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["identical"] is True and report["settings"] == ["receiver", "sharer", "c2c_fp16", "compressed"]
    assert report["before_s"] > 0 and report["after_s"] > 0 and report["floor_s"] > 0
    assert abs(report["ratio"] - report["before_s"] / report["after_s"]) < 1e-9
    assert abs(report["ratio_ceiling"] - report["before_s"] / report["floor_s"]) < 1e-9
    assert set(report["fuse_s"]) == {"c2c_fp16", "compressed"} and min(report["fuse_s"].values()) > 0
