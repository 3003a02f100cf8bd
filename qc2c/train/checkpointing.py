"""Training checkpoints in the published fuser layout, written atomically (docs/c2c.md §3).

    <out>/config.json                       the recipe (pair, alignment, projector, training settings)
    <out>/checkpoint-<step>/projector_*.pt|json, projector_config.json, aggregator_config.json,
                            training_state.pt   optimizer, scheduler, step, loss, RNG states, data position
    <out>/final/...                          the same projector files (what `fuser: {from_run: ...}` loads)

Every folder is built under a hidden temporary name next to its target and renamed into place
(`qc2c.atomic.build_folder`, files and folders fsynced), so a kill at any moment leaves either the previous
checkpoint or the new one, never a half-written folder that the strict loader would refuse (or, worse, a
resume would read).
"""

from __future__ import annotations

import json
import random
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qc2c.atomic import atomic_write, build_folder
from qc2c.fuser.checkpoint import write_projectors

STATE_FILE = "training_state.pt"
_CKPT = re.compile(r"^checkpoint-(\d+)$")


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    out: Path,
    step: int,
    projectors: Sequence[nn.Module],
    layer_map: dict[int, int],
    init_args: Sequence[dict[str, Any]],
    training_state: dict[str, Any],
) -> Path:
    """Write `out/checkpoint-<step>/` atomically; training_state holds optimizer/scheduler/step/loss/position."""
    target = out / f"checkpoint-{step}"
    with build_folder(target) as tmp:
        write_projectors(tmp, projectors, layer_map, init_args)
        torch.save({**training_state, "step": step, "rng": rng_state()}, tmp / STATE_FILE)
    return target


def save_final(
    out: Path, projectors: Sequence[nn.Module], layer_map: dict[int, int], init_args: Sequence[dict[str, Any]]
) -> Path:
    with build_folder(out / "final") as tmp:
        write_projectors(tmp, projectors, layer_map, init_args)
    return out / "final"


def write_recipe(out: Path, recipe: dict[str, Any]) -> None:
    atomic_write(out / "config.json", json.dumps(recipe, indent=4, sort_keys=True))


def remove_partial(out: Path) -> list[Path]:
    """Delete temporary folders a killed save left behind (the run folder has one owner: the registry)."""
    stale = [p for p in out.glob(".*.tmp-*") if p.is_dir()] + [p for p in out.glob(".*.old-*") if p.is_dir()]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale


def latest_checkpoint(out: Path) -> Path | None:
    """The complete checkpoint with the highest step (temporary folders are never matched)."""
    if not out.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in out.iterdir() if (m := _CKPT.match(p.name)) and (p / STATE_FILE).is_file()]
    return max(found)[1] if found else None


def load_checkpoint(folder: Path, projectors: Sequence[nn.Module]) -> dict[str, Any]:
    """Load projector weights strictly into `projectors`; returns the training state (optimizer etc.)."""
    from qc2c.fuser.checkpoint import strict_load

    for i, projector in enumerate(projectors):
        path = folder / f"projector_{i}.pt"
        strict_load(projector, torch.load(path, map_location="cpu", weights_only=True), path)
    return torch.load(folder / STATE_FILE, map_location="cpu", weights_only=False)
