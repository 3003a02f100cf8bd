"""Resume equals uninterrupted, exactly: python -m pytest tests/runner/test_resume_batches.py -q

An uninterrupted in-process run on the tiny pair (7 items, batches of 3: 3 + 3 + 1) is the reference. Then a
kill is simulated at every record boundary of its progress file (the first k lines kept, the rest lost; also
with a torn line after them) and the run resumed. Each resumed run must end with the same per-sample records
(predictions, option probabilities and message bytes, bit for bit) and the same results file as the reference,
timing aside: a partly written batch is scored again whole, in the batch the uninterrupted run formed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from runner.exitcodes import EXIT_OK
from runner.manifest import load_manifest
from runner.plan import make_plan
from runner.records import read_progress
from runner.results import load_result

N_ITEMS = 7
MANIFEST = f"""\
schema: 1
name: kill
milestone: rtest
pair: {{receiver: "tiny:qwen3", sharer: "tiny:qwen2"}}
fuser: {{path: "tiny:qwen3+qwen2"}}
kv:
  quant: {{scheme: int4, group_size: 32}}
  selection: {{method: knorm, keep: 0.5}}
eval: {{datasets: [mini], limit: {N_ITEMS}, batch_size: 3, baselines: [receiver, c2c_fp16]}}
runtime: {{device: cpu, dtype: float32, container: native}}
"""


def _untimed(value):
    """Wall-clock seconds differ between runs; everything else must not."""
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if k != "timing" and not k.endswith("_s")}
    return value


def _run(tmp_path: Path, runs: Path, progress: dict[str, bytes] | None = None) -> Path:
    from runner.execute import run_plan

    path = tmp_path / "kill.yaml"
    path.write_text(MANIFEST)
    plan = make_plan(load_manifest(path), source=path, runs_dir=runs)
    for name, data in (progress or {}).items():
        (plan.run_dir / "progress").mkdir(parents=True, exist_ok=True)
        (plan.run_dir / "progress" / name).write_bytes(data)
    assert run_plan(plan) == EXIT_OK
    return plan.run_dir


def _outcome(run_dir: Path) -> tuple[list, dict]:
    records = [_untimed(r) for r in read_progress(run_dir / "progress" / "mini.jsonl").records]
    result = load_result(run_dir / "results" / "mini.json").dump()
    result.pop("provenance")  # creation time, commit
    result.pop("progress_sha256", None)  # the progress lines carry their timing
    return records, _untimed(result)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, tuple[list, dict]]:
    tmp = tmp_path_factory.mktemp("reference")
    run_dir = _run(tmp, tmp / "runs")
    return run_dir, _outcome(run_dir)


@pytest.mark.parametrize("k", range(N_ITEMS + 1))
def test_a_kill_after_any_record_resumes_to_exactly_the_uninterrupted_result(reference, tmp_path, k: int) -> None:
    ref_dir, expected = reference
    lines = (ref_dir / "progress" / "mini.jsonl").read_bytes().splitlines(keepends=True)
    kept = b"".join(lines[:k]) + (lines[k][: len(lines[k]) // 2] if k < N_ITEMS and k % 2 else b"")  # torn tail
    progress = {"mini.jsonl": kept}
    for name in ("mini.fingerprint", "mini.batches.json"):
        progress[name] = (ref_dir / "progress" / name).read_bytes()
    run_dir = _run(tmp_path, tmp_path / "runs", progress)
    assert _outcome(run_dir) == expected
    batches = json.loads((run_dir / "progress" / "mini.batches.json").read_text())["batches"]
    assert [len(b) for b in batches] == [3, 3, 1]


def test_the_plan_is_written_before_scoring_and_a_lost_plan_is_made_again_the_same(reference, tmp_path) -> None:
    ref_dir, expected = reference
    lines = (ref_dir / "progress" / "mini.jsonl").read_bytes().splitlines(keepends=True)
    progress = {
        "mini.jsonl": b"".join(lines[:4]),
        "mini.fingerprint": (ref_dir / "progress/mini.fingerprint").read_bytes(),
    }
    run_dir = _run(tmp_path, tmp_path / "runs", progress)
    assert _outcome(run_dir) == expected
    assert (run_dir / "progress/mini.batches.json").read_bytes() == (
        ref_dir / "progress/mini.batches.json"
    ).read_bytes()
    shutil.rmtree(run_dir)
