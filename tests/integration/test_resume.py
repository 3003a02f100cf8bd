"""python -m pytest tests/integration/test_resume.py -q

Kill and resume: a run SIGKILLed at several progress counts, then resumed, ends with every sample scored
exactly once and the same metrics as an uninterrupted run; SIGTERM flushes, marks status "preempted" and
exits 75, and the run resumes from there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.exitcodes import EXIT_PREEMPTED
from runner.records import read_progress
from runner.results import load_result

REPO = Path(__file__).resolve().parents[2]
N_ITEMS = 24

MANIFEST = f"""\
schema: 1
name: resume
milestone: itest
pair: {{receiver: "tiny:qwen3", sharer: "tiny:qwen2"}}
fuser: {{path: "tiny:qwen3+qwen2"}}
kv:
  quant: {{scheme: int8}}
  selection: {{method: back, keep: 0.5}}
eval: {{datasets: [mini], limit: {N_ITEMS}, batch_size: 2, baselines: [receiver, c2c_fp16]}}
runtime: {{device: cpu, dtype: float32, container: native}}
"""


def _env(runs: Path) -> dict[str, str]:
    return {**os.environ, "QC2C_RUNS_DIR": str(runs), "OMP_NUM_THREADS": "1"}


def _start(manifest: Path, runs: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "runner", "run", str(manifest)],
        cwd=REPO,
        env=_env(runs),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _progress_lines(runs: Path) -> int:
    files = list((runs / "itest").glob("resume-*/progress/mini.jsonl"))
    return len(files[0].read_bytes().split(b"\n")) - 1 if files else 0


def _wait_for(proc: subprocess.Popen, runs: Path, n_lines: int, timeout_s: float = 240.0) -> None:
    deadline = time.monotonic() + timeout_s
    while _progress_lines(runs) < n_lines:
        assert proc.poll() is None, f"run ended before {n_lines} progress lines: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "timed out waiting for progress"
        time.sleep(0.02)


def _finish(manifest: Path, runs: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "runner", "run", str(manifest)],
        cwd=REPO,
        env=_env(runs),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _outcome(runs: Path) -> tuple[list[dict], dict]:
    run_dir = next((runs / "itest").glob("resume-*"))
    records = read_progress(run_dir / "progress" / "mini.jsonl").records
    result = load_result(run_dir / "results" / "mini.json").dump()
    for setting in result["settings"].values():
        setting.pop("timing")  # wall-clock seconds differ between runs; everything else must not
    result.pop("provenance")  # creation time and commit (others may commit while the test runs) are not metrics
    result.pop("progress_sha256")  # the hash of progress lines that carry their wall-clock timing
    per_sample = sorted(
        (
            {"id": r["id"], **{s: (v["pred"], v["option_probs"], v.get("nbytes")) for s, v in r["settings"].items()}}
            for r in records
        ),
        key=lambda r: r["id"],
    )
    return per_sample, result


@pytest.mark.slow  # four runner processes (reference, two killed, the resume): about a minute on 2 cores
def test_sigkill_at_several_points_then_resume_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    manifest = tmp_path / "resume.yaml"
    manifest.write_text(MANIFEST)
    reference = tmp_path / "reference"
    assert _finish(manifest, reference).returncode == 0

    runs = tmp_path / "killed"
    for n_lines in (2, 10):  # kill after the first batch, then in the middle of the resumed run
        proc = _start(manifest, runs)
        _wait_for(proc, runs, n_lines)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        n_done = len(read_progress(next((runs / "itest").glob("resume-*/progress/mini.jsonl"))).records)
        assert n_done >= n_lines
    final = _finish(manifest, runs)
    assert final.returncode == 0, final.stderr
    assert "resume" in final.stderr

    samples, result = _outcome(runs)
    ref_samples, ref_result = _outcome(reference)
    assert len(samples) == N_ITEMS and len({s["id"] for s in samples}) == N_ITEMS
    assert samples == ref_samples
    assert result == ref_result


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_stop_signal_flushes_marks_preempted_exits_75_and_resumes(tmp_path: Path, sig: signal.Signals) -> None:
    """SIGHUP too: a closing shell sends it to background jobs, which must release the run, not die at 129."""
    manifest = tmp_path / "resume.yaml"
    manifest.write_text(MANIFEST)
    runs = tmp_path / "runs"
    proc = _start(manifest, runs)
    _wait_for(proc, runs, 4)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_PREEMPTED, stderr
    assert "Traceback" not in stderr
    run_dir = next((runs / "itest").glob("resume-*"))
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "preempted" and status["exit_code"] == EXIT_PREEMPTED
    n_before = len(read_progress(run_dir / "progress" / "mini.jsonl").records)
    assert 4 <= n_before < N_ITEMS
    assert status["datasets"]["mini"]["n_done"] == n_before  # flushed: status agrees with the progress file
    entry = next(iter(json.loads((runs / "registry.json").read_text()).values()))
    assert entry["status"] == "running" and entry["pid"] is None  # released: a requeue anywhere resumes at once

    again = _finish(manifest, runs)
    assert again.returncode == 0, again.stderr
    assert f"{n_before} already scored" in again.stderr
    assert len(read_progress(run_dir / "progress" / "mini.jsonl").records) == N_ITEMS
    assert json.loads((run_dir / "status.json").read_text())["state"] == "complete"
