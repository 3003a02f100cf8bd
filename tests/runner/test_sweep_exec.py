"""python -m pytest tests/runner/test_sweep_exec.py -q

A sweep's grid points that differ only in kv run as one group in one process (runner.sweep_exec): each point
keeps its own run key, folder, registry entry and results, and its records and results equal those of the
same manifest run alone; a point killed with SIGKILL resumes where it stopped; grid points that change the
datasets or items fall into separate groups.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.cli.manifests import load_manifests
from runner.cli.run import run_native
from runner.exitcodes import EXIT_OK
from runner.plan import make_plan
from runner.records import read_progress
from runner.registry import Registry
from runner.results import load_result
from runner.sweep_exec import group_plans

REPO = Path(__file__).resolve().parents[2]
NATIVE = {"runtime": "native"}

BASE = """\
schema: 1
name: base
milestone: gtest
pair: {{receiver: "tiny:qwen3", sharer: "tiny:qwen2"}}
fuser: {{path: "tiny:qwen3+qwen2"}}
kv: {{quant: {{scheme: int4, group_size: 32}}, selection: {{method: knorm, keep: 0.5}}}}
eval: {{datasets: [mini], limit: {limit}, batch_size: {batch}, baselines: [receiver, sharer, c2c_fp16, c2c_placebo]}}
runtime: {{device: cpu, dtype: float32, container: native}}
"""

GRID = """\
include: base.yaml
name: sw
grid:
  kv.quant.scheme: [int8, int4, int2]
  kv.selection.keep: [0.5, 1.0]
"""


def _write(tmp_path: Path, *, limit: int = 8, batch: int = 4, grid: str = GRID) -> Path:
    (tmp_path / "base.yaml").write_text(BASE.format(limit=limit, batch=batch))
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(grid)
    return sweep


def _outcome(run_dir: Path, dataset: str = "mini") -> tuple[list[dict], dict]:
    """What must not differ between two runs of one manifest: per-sample predictions, probabilities, bytes;
    the results minus wall-clock timing and creation provenance."""
    records = read_progress(run_dir / "progress" / f"{dataset}.jsonl").records
    samples = [
        {"id": r["id"], **{s: (v["pred"], v["option_probs"], v.get("nbytes")) for s, v in r["settings"].items()}}
        for r in records
    ]
    result = load_result(run_dir / "results" / f"{dataset}.json").dump()
    for setting in result["settings"].values():
        setting.pop("timing")
    result.pop("provenance")
    result.pop("progress_sha256")
    return sorted(samples, key=lambda s: s["id"]), result


def _run_dirs(runs: Path) -> dict[str, Path]:
    return {e.manifest: Path(e.run_dir) for e in Registry(runs).entries()}


def test_grid_points_differing_only_in_kv_form_one_group(tmp_path: Path) -> None:
    sweep = _write(tmp_path, grid=GRID.replace("kv.selection.keep: [0.5, 1.0]", "eval.limit: [4, 6]"))
    plans = [make_plan(m, source=None, runs_dir=tmp_path / "runs") for m in load_manifests(sweep)]
    groups = group_plans(plans)
    assert [len(g) for g in groups] == [3, 3]  # eval.limit changes the items: two groups of three schemes
    assert {p.manifest.eval.limit for p in groups[0]} == {4} and {p.manifest.eval.limit for p in groups[1]} == {6}


def test_a_grouped_sweep_equals_its_points_run_alone_and_each_point_is_its_own_run(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    from qc2c.eval.score import SettingScorer

    sweep = _write(tmp_path)
    manifests = load_manifests(sweep)
    grouped, alone = tmp_path / "grouped", tmp_path / "alone"
    own_path, real = [], SettingScorer.score_rows

    def score_rows(self, items):
        own_path.append(self.name)
        return real(self, items)

    monkeypatch.setattr(SettingScorer, "score_rows", score_rows)
    assert run_native(sweep, manifests, runs_dir=grouped, container=NATIVE) == EXIT_OK
    assert set(own_path) == {"c2c_placebo"}  # every other setting of every point read the shared prefills
    out = capsys.readouterr()
    assert "sweep group: 6 grid points" in out.err and "Δ vs c2c_fp16" in out.out
    assert run_native(sweep, manifests, runs_dir=alone, container=NATIVE, grouped=False) == EXIT_OK
    assert "sweep group" not in capsys.readouterr().err

    runs_g, runs_a = _run_dirs(grouped), _run_dirs(alone)
    assert len(runs_g) == 6 and set(runs_g) == set(runs_a)
    assert {e.status for e in Registry(grouped).entries()} == {"complete"}
    assert len({p.name for p in runs_g.values()}) == 6  # one folder per point, named by its own run key
    for name in runs_g:
        assert _outcome(runs_g[name]) == _outcome(runs_a[name]), name
        assert (runs_g[name] / "provenance.json").exists() and (runs_g[name] / "manifest.yaml").exists()
    bytes_per_point = {n: _outcome(d)[1]["settings"]["compressed"]["bytes"]["mean"] for n, d in runs_g.items()}
    assert len(set(bytes_per_point.values())) == 6  # six codecs, six message sizes: no point scored another's codec

    # a member run alone afterwards is "skip (complete)"
    member = tmp_path / "member.yaml"

    member.write_text((runs_g["sw-scheme_int2-keep_0.5"] / "manifest.yaml").read_text())
    assert run_native(member, load_manifests(member), runs_dir=grouped, container=NATIVE) == EXIT_OK
    assert ": skip (" in capsys.readouterr().err


def _lines(runs: Path) -> dict[str, int]:
    out = {}
    for path in runs.glob("gtest/*/progress/mini.jsonl"):
        out[path.parent.parent.name] = len(path.read_bytes().split(b"\n")) - 1
    return out


@pytest.mark.slow  # three runner processes (reference, killed, resume): about 40 s on 2 cores
def test_a_sigkilled_sweep_resumes_every_point_with_nothing_lost_or_scored_twice(tmp_path: Path) -> None:
    sweep = _write(tmp_path, limit=12, batch=2, grid=GRID.replace("[0.5, 1.0]", "[0.5]"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "runner", "run", str(sweep), "--runs-dir"]
    reference = tmp_path / "reference"
    done = subprocess.run([*cmd, str(reference), "--one-by-one"], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]

    runs = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, str(runs)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while sum(_lines(runs).values()) < 3 * 4:  # two batches of every point written
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = _lines(runs)
    assert len(partial) == 3 and all(0 < n < 12 for n in partial.values()), partial

    final = subprocess.run([*cmd, str(runs)], cwd=REPO, env=env, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr[-2000:]
    assert final.stderr.count(": resume (") == 3 and "sweep group: 3 grid points" in final.stderr
    killed, ref = _run_dirs(runs), _run_dirs(reference)
    for name, run_dir in killed.items():
        samples, result = _outcome(run_dir)
        assert len(samples) == 12 and len({s["id"] for s in samples}) == 12
        assert (samples, result) == _outcome(ref[name]), name


def test_a_stop_signal_preempts_every_point_with_75_and_the_rerun_resumes_them(tmp_path: Path, monkeypatch) -> None:
    import json

    import qc2c.eval.shared as shared
    from runner.exitcodes import EXIT_PREEMPTED

    sweep = _write(tmp_path, grid=GRID.replace("[0.5, 1.0]", "[0.5]"))
    manifests = load_manifests(sweep)
    real, calls = shared.score_shared, []

    def stop_on_second_batch(group, items):
        calls.append(len(group))
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)  # abandoned at once by the stop flag
        return real(group, items)

    monkeypatch.setattr(shared, "score_shared", stop_on_second_batch)
    runs = tmp_path / "runs"
    assert run_native(sweep, manifests, runs_dir=runs, container=NATIVE) == EXIT_PREEMPTED
    dirs = _run_dirs(runs)
    assert len(dirs) == 3
    for run_dir in dirs.values():
        status = json.loads((run_dir / "status.json").read_text())
        assert status["state"] == "preempted" and status["exit_code"] == EXIT_PREEMPTED
        assert len(read_progress(run_dir / "progress" / "mini.jsonl").records) == 4  # the first batch, whole
    assert all(e.pid is None and "preempted" in e.reason for e in Registry(runs).entries())  # released
    monkeypatch.setattr(shared, "score_shared", real)
    assert run_native(sweep, manifests, runs_dir=runs, container=NATIVE) == EXIT_OK
    alone = tmp_path / "alone"
    assert run_native(sweep, manifests, runs_dir=alone, container=NATIVE, grouped=False) == EXIT_OK
    for name, run_dir in _run_dirs(runs).items():
        assert _outcome(run_dir) == _outcome(_run_dirs(alone)[name]), name


def test_on_the_demo_pair_a_grouped_budget_sweep_equals_its_points_run_alone(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(
        "schema: 1\nname: dbase\nmilestone: gtest\n"
        'pair: {receiver: "demo:receiver", sharer: "demo:sharer"}\n'
        'fuser: {path: "demo:receiver+sharer"}\n'
        "kv: {quant: {scheme: int8}, budget: {bytes_per_sample: 2000}}\n"
        "eval: {datasets: [demo], limit: [170, 186], batch_size: 8, baselines: [receiver, sharer, c2c_fp16]}\n"
        "runtime: {device: cpu, dtype: float32, container: native}\n"
    )
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("include: base.yaml\nname: db\ngrid:\n  kv.budget.bytes_per_sample: [1500, 4500, 15000]\n")
    manifests = load_manifests(sweep)
    grouped, alone = tmp_path / "grouped", tmp_path / "alone"
    assert run_native(sweep, manifests, runs_dir=grouped, container=NATIVE) == EXIT_OK
    assert run_native(sweep, manifests, runs_dir=alone, container=NATIVE, grouped=False) == EXIT_OK
    runs_g, runs_a = _run_dirs(grouped), _run_dirs(alone)
    assert len(runs_g) == 3
    for name in runs_g:
        samples, result = _outcome(runs_g[name], "demo")
        assert (samples, result) == _outcome(runs_a[name], "demo"), name
        assert result["settings"]["compressed"]["n"] == 16
    means = sorted(_outcome(d, "demo")[1]["settings"]["compressed"]["bytes"]["mean"] for d in runs_g.values())
    assert means[0] < means[1] < means[2]  # three budgets, three message sizes


def test_a_stop_signal_while_a_group_finishes_starts_no_further_group(tmp_path: Path, monkeypatch) -> None:
    """The signal lands after the group's last check (while its results are written): the group completes,
    but the next group must not start; the command exits 75 and a re-run does the rest."""
    import runner.summarize as summarize
    from runner.exitcodes import EXIT_PREEMPTED

    sweep = _write(tmp_path, limit=4, grid=GRID.replace("kv.selection.keep: [0.5, 1.0]", "eval.limit: [2, 3]"))
    manifests = load_manifests(sweep)
    real, sent = summarize.write_results, []

    def write_then_signal(*args, **kwargs):
        real(*args, **kwargs)
        if not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr("runner.execute.write_results", write_then_signal)
    runs = tmp_path / "runs"
    assert run_native(sweep, manifests, runs_dir=runs, container=NATIVE) == EXIT_PREEMPTED
    entries = Registry(runs).entries()
    assert len(entries) == 3 and {e.status for e in entries} == {"complete"}  # the first group only
    assert run_native(sweep, manifests, runs_dir=runs, container=NATIVE) == EXIT_OK
    assert len(Registry(runs).entries()) == 6
