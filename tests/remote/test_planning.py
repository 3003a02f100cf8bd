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
    tasks = plan_tasks(SWEEP, True)
    assert len(tasks) == 6 and len({t.run_dir for t in tasks}) == 6
    assert [t.run_dir.split("-scheme_")[1].rsplit("-", 1)[0] for t in tasks] == [
        "int8",
        "int4",
        "int2",
        "nf4",
        "fp8_e4m3",
        "fp8_e5m2",
    ]  # the grid order in manifests/sweeps/m2_schemes.yaml
