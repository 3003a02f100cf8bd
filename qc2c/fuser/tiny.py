"""Deterministic random fusers for the tiny zoo pairs (`tiny:qwen3+qwen2`, `tiny:qwen3+llama`).

A tiny fuser is written through the same checkpoint writer as a trained one and read back through the same
strict loader, so the smoke run and the tests exercise the real checkpoint path. Weights come from a
generator seeded by (fuser name, projector index, parameter name); gates are open (logit +1) so that fusion
visibly changes the receiver's cache. The folder lives next to the tiny models
(`$QC2C_TINY_CACHE/fusers/<r>+<s>-<hash>`) and appears by an atomic rename of a finished build.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from qc2c.atomic import build_folder
from qc2c.fuser.checkpoint import save_fuser
from qc2c.fuser.layer_map import last_aligned
from qc2c.fuser.projector import C2CProjector
from qc2c.models.tiny import TINY_MODELS, cache_root, spec_hash

BUILD_VERSION = 1
PARAMS = {
    "hidden_dim": 32,
    "intermediate_dim": 48,
    "num_layers": 3,
    "dropout": 0.1,
    "initial_temperature": 1.0,
    "final_temperature": 0.001,
    "anneal_steps": 1929,
}
ALIGNED = {"llama": "longest"}  # sharers with their own tokenizer, and the strategy their fuser "was trained" with


class UnknownTinyFuser(ValueError):
    pass


def parse(ref: str) -> tuple[str, str]:
    body = ref.removeprefix("tiny:")
    receiver, _, sharer = body.partition("+")
    if not ref.startswith("tiny:") or receiver not in TINY_MODELS or sharer not in TINY_MODELS:
        known = ", ".join(f"tiny:qwen3+{s}" for s in ("qwen2", "llama"))
        raise UnknownTinyFuser(f"unknown tiny fuser {ref!r} (expected tiny:<receiver>+<sharer>, e.g. {known})")
    return receiver, sharer


def _seed(*parts: object) -> int:
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:15], 16)


def build_projector(name: str, i: int, args: dict) -> C2CProjector:
    projector = C2CProjector(**args)
    with torch.no_grad():
        for pname, p in projector.named_parameters():
            g = torch.Generator().manual_seed(_seed(name, i, pname))
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if pname.endswith("gate_logit"):
                p.fill_(1.0)
            elif pname.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * noise)
            else:
                p.copy_((0.02 if pname.endswith("bias") else 0.15) * noise)
    return projector.eval()


def recipe(receiver: str, sharer: str) -> dict:
    return {
        "model": {
            "base_model": f"tiny:{receiver}",
            "teacher_model": f"tiny:{sharer}",
            "is_do_alignment": sharer in ALIGNED,
            "alignment_strategy": ALIGNED.get(sharer, "first"),
            "projector": {"type": "C2CProjector", "params": PARAMS},
            "mapping": "last_aligned",
        },
        "_note": "deterministic random fuser of the qc2c tiny zoo (qc2c/fuser/tiny.py); not trained",
    }


def write_tiny_fuser(ref: str, root: Path) -> Path:
    receiver, sharer = parse(ref)
    r, s = TINY_MODELS[receiver], TINY_MODELS[sharer]
    args = {
        "source_dim": s.head_dim,
        "target_dim": r.head_dim,
        "source_num_heads": s.n_kv_heads,
        "target_num_heads": r.n_kv_heads,
        "dtype": torch.float32,
        **PARAMS,
    }
    name = f"{receiver}+{sharer}"
    projectors = [build_projector(name, i, args) for i in range(r.n_layers)]
    return save_fuser(
        root, projectors, last_aligned(r.n_layers, s.n_layers), recipe(receiver, sharer), [args] * r.n_layers
    )


def fuser_hash(ref: str) -> str:
    receiver, sharer = parse(ref)
    payload = {"build": BUILD_VERSION, "params": PARAMS, "r": spec_hash(receiver), "s": spec_hash(sharer)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def resolve_tiny_fuser(ref: str) -> Path:
    """`"tiny:qwen3+qwen2"` -> its fuser folder (config.json + final/) in the tiny cache, built on first use."""
    receiver, sharer = parse(ref)
    target = cache_root() / "fusers" / f"{receiver}+{sharer}-{fuser_hash(ref)}"
    if not target.is_dir():
        with build_folder(target, replace=False) as tmp:  # a concurrent build may win the rename: kept
            write_tiny_fuser(ref, tmp)
    return target
