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
pair: {{receiver: "tiny:qwen3", sharer: "tiny:{sharer}"{alignment}}}
{fuser}
eval: {{datasets: [mini], limit: 6, batch_size: 4, baselines: {baselines}{text}}}
runtime: {{device: cpu, dtype: float32, container: native}}
"""
FUSER = 'fuser: {path: "tiny:qwen3+qwen2"}\nkv: '


def _run(tmp_path: Path, name: str, baselines: str, kv: str | None = "{quant: {scheme: int4}}", **fields: str):
    fields = {"sharer": "qwen2", "alignment": "", "text": "", **fields}
    if "fuser" not in fields:
        fields["fuser"] = "" if kv is None else FUSER + kv
    path = tmp_path / f"{name}.yaml"
    path.write_text(MANIFEST.format(name=name, baselines=baselines, **fields))
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


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    text = ", text: {max_new_tokens: 5}"
    return _run(tmp_path_factory.mktemp("text"), "text", "[receiver, text_answer, text_analysis]", None, text=text)


def test_text_rows_record_the_text_and_its_utf8_bytes(text_run) -> None:
    _, records, result = text_run
    for setting in ("text_answer", "text_analysis"):
        sizes = [len(r["settings"][setting]["sharer_text"].encode("utf-8")) for r in records]
        assert [r["settings"][setting]["nbytes"] for r in records] == sizes
        assert all(r["settings"][setting]["n_tokens_generated"] <= 5 for r in records)
        stats = result.settings[setting]
        assert stats.bytes.mean == pytest.approx(sum(sizes) / len(sizes))
        assert "receiver" in stats.paired and stats.timing.sharer_decode_s is not None
    assert result.fuser.loaded is False  # text settings need no fuser


def test_text_to_text_runs_on_an_aligned_pair(tmp_path) -> None:
    _, records, result = _run(
        tmp_path,
        "aligned",
        "[text_answer]",
        sharer="llama",
        alignment=", alignment: longest",
        fuser="",
        text=", text: {max_new_tokens: 3}",
    )
    assert result.settings["text_answer"].n == 6 and result.settings["text_answer"].n_errors == 0
    assert all(
        r["settings"]["text_answer"]["nbytes"] == len(r["settings"]["text_answer"]["sharer_text"].encode())
        for r in records
    )


def test_an_oracle_selector_is_marked_in_results_golden_rows_and_the_summary(tmp_path) -> None:
    from runner.golden.merge import GOLDEN_JSON, SUMMARY_MD, merge_runs

    plan, _, result = _run(tmp_path, "oracle", "[receiver]", "{selection: {method: delta, keep: 0.5}}")
    assert result.settings["compressed"].oracle is True and result.settings["receiver"].oracle is False
    golden = tmp_path / "golden"
    report = merge_runs([plan.run_dir], golden, allow=["dirty"], runs_dir=tmp_path / "runs")
    assert report.ok, report.problems
    rows = json.loads((golden / GOLDEN_JSON).read_text())["rows"]
    assert [row["metrics"]["oracle"] for row in rows.values() if row["setting"] == "compressed"] == [True]
    assert "+delta (oracle) |" in (golden / SUMMARY_MD).read_text()
