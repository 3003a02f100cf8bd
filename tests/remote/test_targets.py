"""Targets file validation with file:line errors. Run: .venv/bin/python -m pytest tests/remote/test_targets.py -q"""

from __future__ import annotations

from pathlib import Path

import pytest

from remote.__main__ import main
from remote.targets import TargetError, get_target, load_targets

EXAMPLE = Path(__file__).resolve().parents[2] / "remote" / "targets.example.yaml"


def test_committed_example_validates():
    targets = load_targets(EXAMPLE)
    assert targets["pod"].kind == "runpod" and targets["pod"].slurm is None
    assert targets["cluster"].slurm.gpus == 1 and targets["cluster"].known_hosts == "strict"


def test_known_hosts_policy_defaults_to_strict(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("targets:\n  a:\n    kind: runpod\n    host: h\n    workdir: /w\n")
    assert load_targets(path)["a"].known_hosts == "strict"


def test_errors_name_file_line_and_field(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(
        "targets:\n"
        "  a:\n"
        "    kind: runpod\n"
        "    host: h\n"
        "    workdir: /w\n"
        "    known_hosts: yolo\n"  # line 6
        "  b:\n"
        "    kind: slurm\n"
        "    host: h\n"
        "    workdir: /w/$(id)\n"  # line 10
        "    slurm:\n"
        "      gpus: -1\n"  # line 12
        "      colour: red\n"  # line 13
    )
    with pytest.raises(TargetError) as err:
        load_targets(path)
    problems = err.value.problems
    assert any(p.startswith(f"{path}:6: targets.a.known_hosts:") for p in problems), problems
    assert any(p.startswith(f"{path}:10: targets.b.workdir:") for p in problems), problems
    assert any(p.startswith(f"{path}:12: targets.b.slurm.gpus:") for p in problems), problems
    assert any(p.startswith(f"{path}:13: targets.b.slurm.colour:") for p in problems), problems


def test_hostile_target_name_and_kind_mismatch_refused(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(
        "targets:\n  'x;id':\n    kind: runpod\n    host: h\n    workdir: /w\n"
        "  p:\n    kind: runpod\n    host: h\n    workdir: /w\n    slurm: {gpus: 1}\n"
    )
    with pytest.raises(TargetError) as err:
        load_targets(path)
    assert any(":2: targets.x;id: name must match" in p for p in err.value.problems)
    assert any(
        p.startswith(f"{path}:6: targets.p:") and "only allowed for kind: slurm" in p for p in err.value.problems
    )


def test_unknown_target_lists_known(tmp_path):
    with pytest.raises(TargetError, match=r"unknown target \(known: cluster, pod\)"):
        get_target("nope", EXAMPLE)


def test_cli_bad_input_is_one_line_per_problem_exit_2_no_traceback(tmp_path, capsys):
    path = tmp_path / "t.yaml"
    path.write_text("targets:\n  a:\n    kind: k8s\n    host: h\n    workdir: /w\n")
    assert main(["--targets", str(path), "status", "a"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{path}:3: targets.a.kind:") and "Traceback" not in err
    assert main(["--targets", str(tmp_path / "missing.yaml"), "sync", "a"]) == 2
    assert "targets file not found" in capsys.readouterr().err
