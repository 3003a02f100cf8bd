"""Manifest sections of top-K logit distillation: `kd_cache` (kind: kd_cache) and `train.kd` (objective kd).

    kind: kd_cache                     kind: train
    kd_cache:                          train:
      teacher: c2c_fp16                  objective: kd
      data: {jsonl: ..., max_length}     kd: {from_run: <kd_cache manifest>, temperature: 2.0}
      top_k: 64                          qat: true         # the student reads the compressed message
      random_negatives: 0
      packing: false

The teacher is the pair + fuser reading the fp16 message (`c2c_fp16`), or the manifest's codec
(`compressed`), or one model alone (`receiver`, `sharer`). Cross-field rules with the rest of the manifest
(fuser, kv) live in runner.schema.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from qc2c.config import KDCacheConfig, KDConfig
from qc2c.kd import TEACHERS
from runner.schema_data import TrainData
from runner.schema_types import (
    NonEmptyStr,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    Problems,
    RunName,
    Section,
    StrictBool,
)

SingleModel = ("receiver", "sharer")


class KDCacheSection(Section):
    """What a kind: kd_cache run computes: its teacher, data and the cache's shape (qc2c.kd)."""

    config_type: ClassVar[type] = KDCacheConfig
    data: TrainData
    teacher: Literal[TEACHERS] = KDCacheConfig.teacher
    top_k: Annotated[int, Field(ge=1, le=4096)] = KDCacheConfig.top_k
    random_negatives: Annotated[int, Field(ge=0, le=4096)] = KDCacheConfig.random_negatives
    packing: StrictBool = KDCacheConfig.packing
    shard_size: PositiveInt = KDCacheConfig.shard_size
    batch_size: PositiveInt = KDCacheConfig.batch_size

    @model_validator(mode="after")
    def _packing_single_model(self) -> KDCacheSection:
        if self.packing and self.teacher not in SingleModel:
            why = f"packs rows for a single-model teacher (receiver, sharer); a {self.teacher} teacher fuses one conversation per row"
            raise Problems([("packing", None, why)])
        return self


class KDTrain(Section):
    """`train.kd`: the cache (exactly one of from_run / path) and the loss weights (qc2c.kd.loss)."""

    config_type: ClassVar[type] = KDConfig
    from_run: RunName | None = None
    path: NonEmptyStr | None = None
    temperature: PositiveFloat = KDConfig.temperature
    kl_weight: NonNegativeFloat = KDConfig.kl_weight
    hard_weight: NonNegativeFloat = KDConfig.hard_weight
    ce_weight: NonNegativeFloat = KDConfig.ce_weight

    @model_validator(mode="after")
    def _one_cache(self) -> KDTrain:
        if (self.from_run is None) == (self.path is None):
            raise ValueError("exactly one of from_run (a kind: kd_cache manifest's name) / path (a cache folder)")
        if self.kl_weight + self.hard_weight + self.ce_weight == 0:
            raise Problems([("kl_weight", None, "every loss weight is 0 (allowed: any weight > 0)")])
        return self


def train_kd_problems(train: object) -> list[tuple[str, str | None, str]]:
    """`train` rules of the objective: kd needs train.kd and takes its rows from the cache (no train.data)."""
    objective, kd, data = train.objective, train.kd, train.data  # type: ignore[attr-defined]
    if objective == "kd" and kd is None:
        return [("train.kd", "train.objective", "required when objective: kd (from_run: a kind: kd_cache run)")]
    if objective == "kd" and data is not None:
        return [("train.data", None, "not used with objective: kd (the rows come from the KD cache)")]
    if objective == "sft" and kd is not None:
        return [("train.kd", None, "only used with objective: kd")]
    if objective == "sft" and data is None:
        return [("train.data", "train.objective", "required with objective: sft (a dataset or a jsonl)")]
    return []


def kd_cache_problems(m: object) -> list[tuple[str, str | None, str]]:
    """kind: kd_cache rules: the section, and a fuser exactly when the teacher is the pair."""
    kind, section, fuser, kv_default = m.kind, m.kd_cache, m.fuser, m.kv == type(m.kv)()  # type: ignore[attr-defined]
    if kind != "kd_cache":
        return [("kd_cache", None, f"only allowed with kind: kd_cache (kind is {kind!r})")] if section else []
    problems: list[tuple[str, str | None, str]] = []
    if section is None:
        return [("kd_cache", "kind", "required when kind: kd_cache (teacher, data, top_k)")]
    if section.teacher not in SingleModel and fuser is None:
        problems.append(("fuser", "kd_cache.teacher", f"required for teacher {section.teacher} (the pair's fuser)"))
    if section.teacher in SingleModel and fuser is not None:
        problems.append(("fuser", None, f"not used by teacher {section.teacher} (one model alone)"))
    if section.teacher != "compressed" and not kv_default:
        problems.append(("kv", None, f"not used by teacher {section.teacher} (only teacher compressed sends kv)"))
    if m.eval is not None:  # type: ignore[attr-defined]
        problems.append(("eval", None, "not allowed with kind: kd_cache"))
    return problems


def kd_run_key_exclude(m: object) -> dict[str, object]:
    """What the run key leaves out: the KD fields at their defaults (so every manifest from before them keeps its
    key, run folder and golden rows) and train.gradient_checkpointing always (it changes memory, not numbers)."""
    out: dict[str, object] = {} if m.kd_cache is not None else {"kd_cache": True}  # type: ignore[attr-defined]
    train = m.train  # type: ignore[attr-defined]
    if train is not None:
        keys = {"gradient_checkpointing"} | ({"objective", "kd"} if train.objective == "sft" else set())
        out["train"] = keys
    return out
