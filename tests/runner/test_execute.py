"""python -m pytest tests/runner/test_execute.py -q

In-process runs on the tiny pair: a run that scores nothing is never complete, a sweep runs every member and
skips complete ones, a stop signal is turned into Preempted between batches.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from runner.execute import run_plan
from runner.exitcodes import EXIT_OK, EXIT_PREEMPTED, EXIT_RUN_FAILED
from runner.lifecycle import Preempted, StopFlag
from runner.manifest import load_manifest
from runner.plan import make_plan
from runner.registry import Registry

BASE = """\
schema: 1
name: {name}
milestone: etest
pair: {{receiver: "tiny:qwen3", sharer: "tiny:qwen2"}}
eval: {{datasets: [mini], limit: {limit}, batch_size: 4, baselines: [receiver]}}
runtime: {{device: cpu, dtype: float32, container: native}}
"""


def test_stop_flag_turns_a_signal_into_preempted() -> None:
    stop = StopFlag()
    stop.install()
    try:
        stop.check()
        os.kill(os.getpid(), signal.SIGUSR1)
        with pytest.raises(Preempted, match="SIGUSR1"):
            stop.check()
    finally:
        stop.restore()
    assert signal.getsignal(signal.SIGUSR1) is not stop._handle


def test_a_run_that_scores_nothing_is_never_complete(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text(BASE.format(name="empty", limit="[100, 110]"))  # past the 70 mini items: zero selected
    plan = make_plan(load_manifest(path), source=path, runs_dir=tmp_path / "runs")
    assert run_plan(plan) == EXIT_RUN_FAILED
    entry = Registry(tmp_path / "runs").get(plan.run_key)
    assert entry.status == "failed" and "scored nothing" in entry.reason
    assert json.loads((plan.run_dir / "status.json").read_text())["state"] == "failed"


def test_sweep_runs_every_member_then_skips_them(tmp_path: Path, capsys) -> None:
    from runner.cli.manifests import load_manifests
    from runner.cli.run import run_native

    (tmp_path / "base.yaml").write_text(BASE.format(name="base", limit=3))
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("include: base.yaml\nname: sw\ngrid:\n  eval.batch_size: [1, 3]\n")
    manifests = load_manifests(sweep)
    assert len(manifests) == 2
    runs = tmp_path / "runs"
    assert run_native(sweep, manifests, runs_dir=runs, container={"runtime": "native"}) == EXIT_OK
    first = capsys.readouterr()
    assert "sweep" in first.out and first.err.count(": new (") == 2
    assert {e.status for e in Registry(runs).entries()} == {"complete"}
    assert run_native(sweep, manifests, runs_dir=runs, container={"runtime": "native"}) == EXIT_OK
    assert capsys.readouterr().err.count(": skip (") == 2


def test_resume_refuses_a_dataset_that_changed(tmp_path: Path) -> None:
    path = tmp_path / "changed.yaml"
    path.write_text(BASE.format(name="changed", limit=2))
    plan = make_plan(load_manifest(path), source=path, runs_dir=tmp_path / "runs")
    (plan.run_dir / "progress").mkdir(parents=True)
    (plan.run_dir / "progress" / "mini.fingerprint").write_text("0" * 64 + "\n")
    assert run_plan(plan) == EXIT_RUN_FAILED
    assert "items changed since this run started" in Registry(tmp_path / "runs").get(plan.run_key).reason


def test_a_stop_signal_abandons_a_long_scoring_call_at_once() -> None:
    """Within a batch (a long generation), not after it; the scorers' per-sample `except Exception` must
    not swallow it as a sample error."""
    stop = StopFlag()
    stop.install()

    def long_generation() -> str:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
        except Exception:  # noqa: BLE001 - as the scorers do per sample
            return "recorded as a sample error"
        return "finished"

    try:
        t0 = time.monotonic()
        with pytest.raises(Preempted, match="SIGTERM while scoring a batch"):
            stop.interruptible(long_generation)()
        assert time.monotonic() - t0 < 5
    finally:
        stop.restore()


def test_a_run_stopped_inside_a_batch_is_preempted_and_resumes(tmp_path: Path, monkeypatch) -> None:
    from qc2c.eval.score import SettingScorer

    path = tmp_path / "gen.yaml"
    path.write_text(BASE.format(name="gen", limit=4))
    real, killed_at = SettingScorer.score_rows, []

    def stuck(self, items):
        killed_at.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(60)  # a generation far longer than the grace period
        return real(self, items)

    monkeypatch.setattr(SettingScorer, "score_rows", stuck)
    plan = make_plan(load_manifest(path), source=path, runs_dir=tmp_path / "runs")
    assert run_plan(plan) == EXIT_PREEMPTED
    assert time.monotonic() - killed_at[0] < 20  # not the 60 s the batch would take
    assert json.loads((plan.run_dir / "status.json").read_text())["state"] == "preempted"
    monkeypatch.setattr(SettingScorer, "score_rows", real)
    assert run_plan(make_plan(load_manifest(path), source=path, runs_dir=tmp_path / "runs")) == EXIT_OK
