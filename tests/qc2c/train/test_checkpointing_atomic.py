"""Durable build-then-rename of checkpoints and other folders (qc2c.atomic), and the checkpoint writer using it.

Run: .venv/bin/python -m pytest tests/qc2c/train/test_checkpointing_atomic.py -q
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from qc2c import atomic
from qc2c.atomic import atomic_write, build_folder
from qc2c.fuser.projector import C2CProjector
from qc2c.train import checkpointing as ckpt

ARGS = {
    "source_dim": 4,
    "target_dim": 4,
    "source_num_heads": 1,
    "target_num_heads": 1,
    "hidden_dim": 8,
    "intermediate_dim": 8,
    "num_layers": 3,
    "dtype": torch.float32,
}


@pytest.fixture
def synced(monkeypatch) -> list[Path]:
    """The paths os.fsync is called on inside qc2c.atomic, in order."""
    seen: list[Path] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        seen.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    return seen


def test_a_built_folder_is_synced_file_by_file_then_renamed_and_its_parent_synced(tmp_path, synced):
    target = tmp_path / "out" / "final"
    with build_folder(target) as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "a.bin").write_bytes(b"a")
        (tmp / "b.json").write_text("{}")
        assert tmp.parent == target.parent and tmp.name.startswith(".final.tmp-")
    assert sorted(p.name for p in target.rglob("*")) == ["a.bin", "b.json", "sub"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["final"]  # no temporary folder left
    names = [p.name for p in synced]
    assert {"a.bin", "b.json", "sub"} <= set(names)  # every file and folder, before the rename ...
    assert synced[-1] == target.parent  # ... and the parent after it


def test_an_exception_publishes_nothing_and_leaves_no_temporary_folder(tmp_path):
    target = tmp_path / "checkpoint-3"
    with pytest.raises(RuntimeError), build_folder(target) as tmp:
        (tmp / "half.pt").write_bytes(b"x")
        raise RuntimeError("killed mid-save")
    assert list(tmp_path.iterdir()) == []


def test_replace_swaps_whole_folders_and_keep_mode_keeps_the_first(tmp_path):
    target = tmp_path / "final"
    for content in ("old", "new"):
        with build_folder(target) as tmp:
            (tmp / content).write_text(content)
    assert [p.name for p in target.iterdir()] == ["new"] and [p.name for p in tmp_path.iterdir()] == ["final"]
    with build_folder(target, replace=False) as tmp:  # a cache whose name fixes its content: first one wins
        (tmp / "other").write_text("other")
    assert [p.name for p in target.iterdir()] == ["new"] and [p.name for p in tmp_path.iterdir()] == ["final"]


@pytest.mark.parametrize("umask,mode", [(0o022, 0o755), (0o077, 0o700)])
def test_folders_get_the_umask_mode_not_mkdtemps_private_mode(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        with build_folder(tmp_path / "final") as tmp:
            (tmp / "x").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "final").stat().st_mode) == mode


def test_atomic_write_syncs_the_file_and_its_folder(tmp_path, synced):
    path = tmp_path / "a" / "config.json"
    atomic_write(path, "{}")
    assert path.read_text() == "{}" and [p.name for p in path.parent.iterdir()] == ["config.json"]
    assert synced[-1] == path.parent and synced[-2].parent == path.parent  # the temp file, then the folder


def test_checkpoint_and_final_are_built_atomically_and_load_back(tmp_path, synced):
    projectors = [C2CProjector(**ARGS) for _ in range(2)]
    folder = ckpt.save_checkpoint(tmp_path, 5, projectors, {0: 0, 1: 0}, [ARGS] * 2, {"loss": 1.5})
    final = ckpt.save_final(tmp_path, projectors, {0: 0, 1: 0}, [ARGS] * 2)
    ckpt.write_recipe(tmp_path, {"model": {}})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-5", "config.json", "final"]
    assert ckpt.latest_checkpoint(tmp_path) == folder and final == tmp_path / "final"
    assert tmp_path in synced  # the renames, and config.json's
    for name in ("checkpoint-5", "final"):  # each folder under its temporary name, before its rename
        assert any(p.name.startswith(f".{name}.tmp-") for p in synced), name
    fresh = [C2CProjector(**ARGS) for _ in range(2)]
    assert ckpt.load_checkpoint(folder, fresh)["loss"] == 1.5
    for a, b in zip(projectors, fresh):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
