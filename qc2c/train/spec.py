"""What a training run needs: the pair, its `train` and `kv` settings (qc2c.config) and the runtime."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from qc2c.config import KVConfig, OptimConfig, ProjectorConfig, RuntimeConfig, TrainConfig, from_json, kv_config

RUNNER_ONLY_RUNTIME = ("container", "max_sample_errors")  # runtime settings of where a run is placed


@dataclass
class TrainSpec:
    """What a training run needs: the pair, the `train` and `kv` settings (qc2c.config) and the runtime."""

    receiver: str
    sharer: str
    train: TrainConfig
    alignment: str | None = None
    receiver_revision: str = "main"
    sharer_revision: str = "main"
    kv: KVConfig = KVConfig()  # the codec in the path with train.qat
    device: str = "cpu"
    dtype: str = "float32"
    seed: int = 0
    name: str = ""

    @classmethod
    def from_manifest(cls, m: dict[str, Any]) -> TrainSpec:
        """From a kind: train manifest as JSON (the validated manifest's dump, or a manifest file as read);
        settings it leaves out take qc2c.config's defaults."""
        if m.get("kind", "train") != "train" or not isinstance(m.get("train"), dict):
            raise ValueError(f"manifest {m.get('name', '?')}: kind: training needs kind: train and a train: section")
        pair = m["pair"]
        runtime = from_json(RuntimeConfig, m.get("runtime") or {}, ignore=RUNNER_ONLY_RUNTIME)
        device = runtime.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        alignment = pair.get("alignment", "none")
        return cls(
            receiver=pair["receiver"],
            sharer=pair["sharer"],
            train=from_json(TrainConfig, m["train"]),
            alignment=None if alignment == "none" else alignment,
            receiver_revision=pair.get("receiver_revision", "main"),
            sharer_revision=pair.get("sharer_revision", "main"),
            kv=kv_config(m.get("kv")),
            device=device,
            dtype=runtime.dtype,
            seed=runtime.seed,
            name=m.get("name", ""),
        )

    @property
    def optim(self) -> OptimConfig:
        return self.train.optim

    @property
    def projector(self) -> ProjectorConfig:
        return self.train.projector
