"""Latent wire checkpoints, one file per part, written atomically (`qc2c.atomic.build_folder`).

    <run>/checkpoint-<step>/encoder.pt, adapter_<m>.pt, deep_prefix_<m>.pt, gist_<m>.pt, training_state.pt
    <run>/final/            the same parts + latent.json (the config, each decoder's reference and geometry)

`<m>` is the decoder's `model_key` (`demo_receiver`). An eval manifest loads final/ with `eval.latent`;
a stage-b run starts from a stage-a run's final/ (`train.latent.from_run`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from qc2c.atomic import build_folder
from qc2c.fuser.checkpoint import file_sha256
from qc2c.latent.config import LatentConfig
from qc2c.latent.model import DecoderGeometry, LatentWire
from qc2c.train.checkpointing import STATE_FILE, rng_state

CONFIG_FILE = "latent.json"
SHAPE_FIELDS = ("latent_len", "d_z", "encoder_layers", "encoder_heads", "adapter")  # must match to continue


class LatentCheckpointError(ValueError):
    """A latent checkpoint that is missing, incomplete or does not fit the requested wire."""


def write_parts(folder: Path, wire: LatentWire) -> None:
    for name, module in wire.parts().items():
        torch.save(module.state_dict(), folder / f"{name}.pt")


def save_checkpoint(out: Path, step: int, wire: LatentWire, state: dict[str, Any]) -> Path:
    target = out / f"checkpoint-{step}"
    with build_folder(target) as tmp:
        write_parts(tmp, wire)
        torch.save({**state, "step": step, "rng": rng_state()}, tmp / STATE_FILE)
    return target


def save_final(out: Path, wire: LatentWire, decoders: dict[str, str], extra: dict[str, Any]) -> Path:
    """final/: the parts and latent.json ({config, decoders: {key: {ref, geometry}}, ...extra})."""
    doc = {
        "config": asdict(wire.cfg),
        "decoders": {k: {"ref": ref, "geometry": wire.geometries[k].as_json()} for k, ref in decoders.items()},
        "encoder_vocab": wire.encoder_vocab,
        **extra,
    }
    with build_folder(out / "final") as tmp:
        write_parts(tmp, wire)
        (tmp / CONFIG_FILE).write_text(json.dumps(doc, indent=2, sort_keys=True), encoding="utf-8")
    return out / "final"


def load_parts(folder: Path, wire: LatentWire, *, allow_missing: tuple[str, ...] = ()) -> list[str]:
    """Load every part of `wire` from `folder` strictly; parts whose prefix is in `allow_missing` may be absent
    (they keep their fresh weights: a stage b that adds a deep prefix). Returns the names loaded."""
    loaded = []
    for name, module in wire.parts().items():
        path = folder / f"{name}.pt"
        if not path.is_file():
            if name.startswith(allow_missing):
                continue
            raise LatentCheckpointError(f"{path}: missing (the checkpoint has no {name})")
        try:
            module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise LatentCheckpointError(f"{path}: does not fit this wire ({first})") from None
        loaded.append(name)
    return loaded


def read_config(final: Path) -> dict[str, Any]:
    path = final / CONFIG_FILE
    if not path.is_file():
        raise LatentCheckpointError(f"{path}: missing (not a latent wire's final/ folder)")
    return json.loads(path.read_text(encoding="utf-8"))


def shape_problems(cfg: LatentConfig, earlier: dict[str, Any]) -> list[str]:
    """Why `cfg` cannot continue a run whose latent.json config is `earlier` (empty when it can)."""
    return [
        f"train.latent.{f}: {getattr(cfg, f)!r} differs from the earlier run's {earlier.get(f)!r}"
        for f in SHAPE_FIELDS
        if earlier.get(f) != getattr(cfg, f)
    ]


@dataclass
class LoadedWire:
    """A trained wire for evaluation: the modules, which decoders it serves, and where it came from."""

    wire: LatentWire
    decoders: dict[str, str]  # key -> model reference
    root: Path
    sha256: str  # of latent.json + every part file, in name order
    encoder_tokenizer: str  # the decoder key whose tokenizer the encoder reads


def load_wire(final: Path) -> LoadedWire:
    doc = read_config(final)
    known = set(LatentConfig.__dataclass_fields__)
    cfg = LatentConfig(**{k: v for k, v in doc["config"].items() if k in known})
    geos = {k: DecoderGeometry(**d["geometry"]) for k, d in doc["decoders"].items()}
    enc_key = doc["encoder_tokenizer"]
    wire = LatentWire(cfg, geos, int(doc["encoder_vocab"]))
    load_parts(final, wire)
    wire.eval().requires_grad_(False)
    files = [final / CONFIG_FILE] + sorted(final.glob("*.pt"))
    digest = file_sha256_many(files)
    refs = {k: d["ref"] for k, d in doc["decoders"].items()}
    return LoadedWire(wire, refs, final, digest, enc_key)


def file_sha256_many(paths: list[Path]) -> str:
    import hashlib

    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode() + b"\0" + file_sha256(p).encode())
    return h.hexdigest()
