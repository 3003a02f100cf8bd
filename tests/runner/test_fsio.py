"""Atomic writes: content, mode, no leftovers. Run: .venv/bin/python -m pytest tests/runner/test_fsio.py -q"""

from __future__ import annotations

import json
import os
import stat

import pytest

from runner.fsio import atomic_write, atomic_write_json


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_get_the_umask_mode_not_a_private_temp_mode(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "a" / "f.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a" / "f.txt").stat().st_mode) == mode


def test_replace_leaves_only_the_new_file(tmp_path):
    target = tmp_path / "golden_runs.json"
    atomic_write_json(target, {"rows": 1})
    atomic_write_json(target, {"rows": 2})
    assert json.loads(target.read_text()) == {"rows": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["golden_runs.json"]
