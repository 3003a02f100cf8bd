"""Manifest sections of the latent wire (qc2c.latent): `train.latent` (kind: train, `train.method: latent`) and
`eval.latent` (kind: eval, the settings latent / latent_int8 / latent_int4 / latent_text / latent_placebo).

Kept apart from runner/schema.py, which adds the two fields and calls the rules here. Every field is
documented in docs/manifest.md ("Latent wire").
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from qc2c.latent.config import ADAPTERS, DATA_SOURCES, LatentConfig, LatentEvalConfig
from runner.schema_types import (
    Fraction,
    NonEmptyStr,
    NonNegativeFloat,
    PositiveInt,
    Problems,
    RunName,
    Section,
    StrictBool,
)

LATENT_SETTINGS = ("latent", "latent_int8", "latent_int4", "latent_text", "latent_placebo")
Small = Annotated[int, Field(ge=1, le=1024)]


class LatentTrain(Section):
    config_type: ClassVar[type] = LatentConfig
    stage: Literal["a", "b"] = LatentConfig.stage
    from_run: RunName | None = None
    data: Literal[DATA_SOURCES] = LatentConfig.data
    latent_len: Small = LatentConfig.latent_len
    d_z: Small = LatentConfig.d_z
    encoder_layers: Annotated[int, Field(ge=1, le=24)] = LatentConfig.encoder_layers
    encoder_heads: Annotated[int, Field(ge=1, le=64)] = LatentConfig.encoder_heads
    adapter: Literal[ADAPTERS] = LatentConfig.adapter
    deep_prefix: StrictBool = LatentConfig.deep_prefix
    deep_prefix_len: Small = LatentConfig.deep_prefix_len
    gist: StrictBool = LatentConfig.gist
    gist_weight: NonNegativeFloat = LatentConfig.gist_weight
    tf_weight: NonNegativeFloat = LatentConfig.tf_weight
    first_weight: NonNegativeFloat = LatentConfig.first_weight
    kce_weight: NonNegativeFloat = LatentConfig.kce_weight
    kd_weight: NonNegativeFloat = LatentConfig.kd_weight
    k_start: Small = LatentConfig.k_start
    k_end: Small = LatentConfig.k_end
    keep_start: Fraction = LatentConfig.keep_start  # (0, 1]: a wire of zeros carries nothing
    keep_end: Fraction = LatentConfig.keep_end
    log_every: PositiveInt = LatentConfig.log_every

    @model_validator(mode="after")
    def _consistent(self) -> LatentTrain:
        problems = []
        if self.d_z % self.encoder_heads:
            problems.append(("encoder_heads", None, f"must divide d_z ({self.d_z})"))
        if self.stage == "b" and self.from_run is None:
            problems.append(("from_run", "stage", "required with stage: b (the stage-a run it continues)"))
        if self.k_end < self.k_start:
            problems.append(("k_end", None, f"must be >= k_start ({self.k_start})"))
        if not self.deep_prefix and self.deep_prefix_len != LatentConfig.deep_prefix_len:
            problems.append(("deep_prefix_len", None, "only used with deep_prefix: true"))
        if not self.gist and self.gist_weight != LatentConfig.gist_weight:
            problems.append(("gist_weight", None, "only used with gist: true"))
        if problems:
            raise Problems(problems)
        return self


class LatentEval(Section):
    """Where the trained wire comes from (exactly one of from_run / path) and how the int settings group it."""

    config_type: ClassVar[type] = LatentEvalConfig
    from_run: RunName | None = None
    path: NonEmptyStr | None = None
    group_size: PositiveInt | None = None
    max_new_tokens: Annotated[int, Field(ge=1, le=64)] = LatentEvalConfig.max_new_tokens

    @model_validator(mode="after")
    def _one_source(self) -> LatentEval:
        if (self.from_run is None) == (self.path is None):
            raise ValueError("exactly one of from_run / path is required")
        return self


def train_latent_problems(train: object) -> list[tuple[str, str | None, str]]:
    """`train` rules of method latent: train.latent required, and none of the C2C training inputs."""
    method, latent = train.method, train.latent  # type: ignore[attr-defined]
    if method != "latent":
        return [("train.latent", None, "only used with method: latent")] if latent is not None else []
    problems: list[tuple[str, str | None, str]] = []
    if latent is None:
        problems.append(("train.latent", "train.method", "required with method: latent (stage, latent_len, d_z, ...)"))
    if train.data is not None:  # type: ignore[attr-defined]
        problems.append(("train.data", None, "not used with method: latent (train.latent.data names its items)"))
    if getattr(train, "objective", "sft") != "sft" or train.qat:  # type: ignore[attr-defined]
        problems.append(("train.method", None, "latent trains no fuser: objective kd and qat do not apply"))
    return problems


def eval_latent_problems(m: object) -> list[tuple[str, str | None, str]]:
    """Latent settings need eval.latent and the demo dataset; eval.latent needs a latent setting."""
    ev = m.eval  # type: ignore[attr-defined]
    if ev is None:
        return []
    wanted = [s for s in ev.baselines if s in LATENT_SETTINGS]
    if ev.latent is None:
        return [("eval.latent", "eval.baselines", f"required by {', '.join(wanted)}")] if wanted else []
    problems: list[tuple[str, str | None, str]] = []
    if not wanted:
        problems.append(("eval.latent", None, f"only used by the settings {', '.join(LATENT_SETTINGS)}"))
    if set(ev.datasets) != {"demo"}:
        problems.append(("eval.datasets", None, "latent settings read the demo world's facts (allowed: [demo])"))
    return problems


def latent_run_key_exclude(m: object, exclude: dict) -> None:
    """Leave the latent fields out of the run key at their defaults (earlier manifests keep their keys)."""
    train, ev = m.train, m.eval  # type: ignore[attr-defined]
    if train is not None and train.method == "c2c":
        exclude["train"] = set(exclude.get("train", set())) | {"method", "latent"}
    if ev is not None and ev.latent is None:
        exclude["eval"] = set(exclude.get("eval", set())) | {"latent"}
