"""python -m pytest tests/runner/test_comparisons.py -q

End to end on the tiny pair: the placebo control, c2c_fp16 on the bytes axis, the text-to-text settings and
the oracle mark reach progress rows, results files and golden rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.execute import run_plan
from runner.exitcodes import EXIT_OK
from runner.manifest import load_manifest
from runner.plan import make_plan
from runner.records import read_progress
from runner.summarize import read_results

MANIFEST = """\
schema: 1
name: {name}
milestone: ctest
pair: {{receiver: "tiny:qwen3", sharer: "tiny:qwen2"}}
fuser: {{path: "tiny:qwen3+qwen2"}}
kv: {kv}
eval: {{datasets: [mini], limit: 6, batch_size: 4, baselines: {baselines}}}
runtime: {{device: cpu, dtype: float32, container: native}}
"""


def _run(tmp_path: Path, name: str, baselines: str, kv: str = "{quant: {scheme: int4}}"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(MANIFEST.format(name=name, baselines=baselines, kv=kv))
    plan = make_plan(load_manifest(path), source=path, runs_dir=tmp_path / "runs")
    assert run_plan(plan) == EXIT_OK, (plan.run_dir / "logs" / "run.log").read_text()
    (result,) = read_results(plan.run_dir)
    return plan, read_progress(plan.run_dir / "progress" / "mini.jsonl").records, result


@pytest.fixture(scope="module")
def placebo_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("placebo"), "placebo", "[receiver, c2c_fp16, c2c_placebo]")


def test_placebo_rows_record_a_partner_that_is_another_evaluated_item(placebo_run) -> None:
    _, records, _ = placebo_run
    ids = {r["id"] for r in records}
    partners = [r["settings"]["c2c_placebo"]["partner_id"] for r in records]
    assert all(p in ids and p != r["id"] for p, r in zip(partners, records))
    assert sorted(partners) == sorted(ids)  # a permutation: every item is some item's partner once


def test_placebo_result_is_paired_against_the_receiver(placebo_run) -> None:
    _, _, result = placebo_run
    placebo = result.settings["c2c_placebo"]
    assert placebo.n == 6 and "receiver" in placebo.paired and "c2c_fp16" in placebo.paired
    assert placebo.bytes is not None and placebo.bytes.mean > 0


def test_c2c_fp16_has_message_bytes_and_is_the_compression_reference(placebo_run) -> None:
    _, records, result = placebo_run
    fp16, compressed = result.settings["c2c_fp16"], result.settings["compressed"]
    assert fp16.bytes is not None and fp16.compression_ratio == pytest.approx(1.0)
    for r in records:
        assert r["settings"]["compressed"]["nbytes_fp16_message"] == r["settings"]["c2c_fp16"]["nbytes"]
    ratios = [r["settings"]["c2c_fp16"]["nbytes"] / r["settings"]["compressed"]["nbytes"] for r in records]
    assert compressed.compression_ratio == pytest.approx(sum(ratios) / len(ratios))
    assert compressed.bytes.mean < fp16.bytes.mean


def test_results_file_round_trips(placebo_run) -> None:
    plan, _, _ = placebo_run
    data = json.loads((plan.run_dir / "results" / "mini.json").read_text())
    assert set(data["settings"]) == {"compressed", "receiver", "c2c_fp16", "c2c_placebo"}
