"""python -m pytest tests/runner/test_status.py -q"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.status import StatusFile


def test_status_file_counts_and_states(tmp_path: Path) -> None:
    status = StatusFile(tmp_path, "k" * 64)
    status.set_dataset("mini", n_done=2, n_total=10, n_errors=0)
    status.write("running")
    assert json.loads((tmp_path / "status.json").read_text())["eta_s"] is None
    status.scored("mini", 4, 1)
    status.write("preempted", exit_code=75)
    doc = json.loads((tmp_path / "status.json").read_text())
    assert doc["state"] == "preempted" and doc["exit_code"] == 75
    assert doc["datasets"]["mini"] == {"n_done": 6, "n_total": 10, "n_errors": 1}
    assert doc["eta_s"] >= 0
    with pytest.raises(ValueError, match="unknown run state"):
        status.write("done")
