"""Launch planning through the real `python -m runner plan --json --no-preflight`.

Run: .venv/bin/python -m pytest tests/remote/test_planning.py -q
"""

from __future__ import annotations

from pathlib import Path

import pytest

from remote.planning import PlanError, plan_tasks
from runner.manifest import load_manifest

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "manifests" / "smoke.yaml"
SWEEP = REPO / "manifests" / "sweeps" / "m2_schemes.yaml"


def test_single_manifest_plans_the_runners_run_folder(monkeypatch):
    monkeypatch.chdir(REPO)
    [task] = plan_tasks(SMOKE, False)
    manifest = load_manifest(SMOKE)
    # run_tag = <name>-<run_key[:10]> under runs/<milestone>/ (interfaces: run folder)
    assert task.run_dir == f"runs/{manifest.milestone}/{manifest.name}-{manifest.run_key()[:10]}"
    assert task.manifest_text == SMOKE.read_text()


def test_sweep_without_flag_is_refused_and_bad_manifest_names_its_line(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(PlanError, match="a sweep with 6 members; launch it with --sweep"):
        plan_tasks(SWEEP, False)
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMOKE.read_text().replace("scheme: int4 ", "scheme: int5 "))
    with pytest.raises(PlanError, match=r"bad\.yaml:\d+: kv\.quant\.scheme"):
        plan_tasks(bad, False)


@pytest.mark.slow
def test_sweep_members_round_trip_to_the_planned_run_keys(monkeypatch):
    monkeypatch.chdir(REPO)
    [group] = plan_tasks(SWEEP, True)  # six schemes differ only in kv: one task scores them as one group
    one_each = plan_tasks(SWEEP, True, chunk=1)
    assert len(one_each) == 6 and [t.run_dir for t in one_each] == group.run_dirs
    assert [d.split("-scheme_")[1].rsplit("-", 1)[0] for d in group.run_dirs] == [
        "int8",
        "int4",
        "int2",
        "nf4",
        "fp8_e4m3",
        "fp8_e5m2",
    ]  # the grid order in manifests/sweeps/m2_schemes.yaml


def test_a_grid_is_chunked_by_group_and_each_chunk_expands_to_its_planned_members(tmp_path, monkeypatch):
    from runner.sweep import expand_file

    monkeypatch.chdir(REPO)
    sweep = tmp_path / "grid.yaml"
    (tmp_path / "smoke.yaml").write_text(SMOKE.read_text())
    sweep.write_text(
        "include: smoke.yaml\nname: g\ngrid:\n"
        "  eval.limit: [2, 3]\n  kv.quant.scheme: [int8, int4, int2, nf4, fp8_e4m3]\n  kv.selection.keep: [0.5, 1.0]\n"
    )
    tasks = plan_tasks(sweep, True, chunk=4)
    # eval.limit splits the 20 points into two groups of 10; each group is cut into chunks of two schemes
    # (x two keeps = 4 points) and a last chunk of one scheme
    assert [len(t.run_dirs) for t in tasks] == [4, 4, 2, 4, 4, 2]
    planned = [d for t in tasks for d in t.run_dirs]
    members = expand_file(sweep)
    assert sorted(planned) == sorted(f"runs/{m.milestone}/{m.name}-{m.run_key()[:10]}" for m in members)
    for task in tasks:
        path = tmp_path / "task.yaml"
        path.write_text(task.manifest_text)
        expanded = expand_file(path)
        assert [f"runs/{m.milestone}/{m.name}-{m.run_key()[:10]}" for m in expanded] == task.run_dirs
        assert len({m.eval.limit for m in expanded}) == 1
