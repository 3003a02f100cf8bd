"""Pydantic models of the run manifest, format 1 (field names are the contract documented in docs/manifest.md).

One small frozen class per section, `extra="forbid"` everywhere: a manifest is a value, and its
canonical JSON hash is the run key (`Manifest.run_key()`). Plug-in names (schemes, selectors,
allocators, datasets) are checked through their families, so `runner ls`, the docs and the schema
cannot drift. Cross-field rules raise `Problems`, which carries the dotted field each problem is
about; runner/manifest.py turns that into `file:line: field: message`.

Fuser rule: exactly one of `path` / `hub` / `from_run`. `fuser:` may be left out for `kind: train`
(training builds it; a given fuser is the starting point), for `kind: bench`, and for `kind: eval`
when no baseline needs a fuser (`eval.baselines` non-empty, within `NO_FUSER_BASELINES`): such a run
evaluates only those baselines, so `kv:` must keep its defaults. Likewise a setting the chosen method
does not use (`window`, `knorm_sign`, `max_new_tokens`) keeps its default: one run key per meaning.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, ClassVar, Literal

from pydantic import Field, Strict, StringConstraints, field_validator, model_validator

from qc2c.config import (
    BudgetConfig,
    EvalConfig,
    KVConfig,
    OptimConfig,
    OverrideConfig,
    PrecisionConfig,
    ProjectorConfig,
    QuantConfig,
    RuntimeConfig,
    SelectionConfig,
    TextConfig,
    TrainConfig,
)
from qc2c.eval.settings import BASELINES, NO_FUSER, TEXT, setting_problems
from qc2c.kv.quant import CONVENTIONS, convention_applies
from qc2c.kv.schemes.base import SCALE_DTYPES
from runner import schema_latent as lat
from runner.schema_data import TrainData  # noqa: F401  (re-exported: the train.data section)
from runner.schema_kd import KDCacheSection, KDTrain, kd_cache_problems, kd_run_key_exclude, train_kd_problems
from runner.schema_types import (  # noqa: F401  (PATTERN_HELP, NAME_PATTERN: re-exported for the loader, tests)
    DEVICE_PATTERN,
    NAME_PATTERN,
    PATTERN_HELP,
    AllocatorName,
    Axis,
    Candidate,
    DatasetName,
    Fraction,
    HubRepo,
    LayerRange,
    Limit,
    NonEmptyStr,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Problems,
    RunName,
    SchemeName,
    Section,
    SelectorName,
    Sha256,
    StrictBool,
    TokenCount,
    Unique,
    UnitInterval,
)

FORMAT_VERSION = 1
NO_FUSER_BASELINES = frozenset(NO_FUSER)


# ---- pair and fuser ----


class Pair(Section):
    receiver: NonEmptyStr
    receiver_revision: NonEmptyStr = "main"
    sharer: NonEmptyStr
    sharer_revision: NonEmptyStr = "main"
    alignment: Literal["none", "first", "longest"] = "none"


class Hub(Section):
    repo: HubRepo
    subfolder: NonEmptyStr | None = None
    revision: NonEmptyStr = "main"


class FuserSource(Section):
    """Where the fuser checkpoint comes from: exactly one of path / hub / from_run (+ optional sha256 pin)."""

    path: NonEmptyStr | None = None
    hub: Hub | None = None
    from_run: RunName | None = None
    sha256: Sha256 | None = None

    @model_validator(mode="after")
    def _exactly_one_source(self) -> FuserSource:
        given = [k for k in ("path", "hub", "from_run") if getattr(self, k) is not None]
        if len(given) != 1:
            found = f"found: {', '.join(given)}" if given else "found none"
            raise ValueError(f"exactly one of path / hub / from_run is required ({found})")
        return self


# ---- kv compression ----


class Quant(Section):
    config_type: ClassVar[type] = QuantConfig
    scheme: SchemeName = QuantConfig.scheme
    symmetric: StrictBool = QuantConfig.symmetric
    key_axis: Axis = QuantConfig.key_axis
    value_axis: Axis = QuantConfig.value_axis
    group_size: PositiveInt | None = QuantConfig.group_size
    scale_dtype: Literal[tuple(SCALE_DTYPES)] = QuantConfig.scale_dtype
    # asymmetric int8/int4/int2 only: kivi (KIVI's math, a float min per group) | observer (integer zero point;
    # what every run before this field used, kept for reproducibility; see qc2c.kv.schemes.uniform)
    convention: Literal[CONVENTIONS] = QuantConfig.convention


class Override(Section):
    config_type: ClassVar[type] = OverrideConfig
    layers: LayerRange
    scheme: SchemeName


class Precision(Section):
    """Per RECEIVER layer precision; `default: null` means kv.quant.scheme."""

    config_type: ClassVar[type] = PrecisionConfig
    default: SchemeName | None = PrecisionConfig.default
    overrides: tuple[Override, ...] = PrecisionConfig.overrides
    last_fp16: PositiveInt | None = PrecisionConfig.last_fp16

    @model_validator(mode="after")
    def _no_overlap(self) -> Precision:
        seen: dict[int, int] = {}
        for i, override in enumerate(self.overrides):
            clash = sorted(layer for layer in override.layers if layer in seen)
            if clash:
                raise Problems(
                    [(f"overrides.{i}.layers", None, f"layers {clash} already set by overrides[{seen[clash[0]]}]")]
                )
            seen.update(dict.fromkeys(override.layers, i))
        return self


class Selection(Section):
    config_type: ClassVar[type] = SelectionConfig
    method: SelectorName = SelectionConfig.method
    keep: Fraction = SelectionConfig.keep
    min_tokens: PositiveInt = SelectionConfig.min_tokens
    knorm_sign: Literal["low", "high"] = SelectionConfig.knorm_sign
    window: PositiveInt = SelectionConfig.window
    seed: NonNegativeInt = SelectionConfig.seed

    @model_validator(mode="after")
    def _settings_match_method(self) -> Selection:
        problems = []
        if self.method == "all" and self.keep != 1.0:
            problems.append(("keep", None, "method 'all' sends every token (allowed: keep 1.0, or choose a selector)"))
        # unused settings must keep their defaults: never silently ignored, and one run key per meaning
        if self.knorm_sign != SelectionConfig.knorm_sign and self.method != "knorm":
            problems.append(("knorm_sign", None, f"only used by method 'knorm' (method is {self.method!r})"))
        if self.window != SelectionConfig.window and self.method != "attention":
            problems.append(("window", None, f"only used by method 'attention' (method is {self.method!r})"))
        if problems:
            raise Problems(problems)
        return self


class Budget(Section):
    config_type: ClassVar[type] = BudgetConfig
    bytes_per_sample: PositiveInt
    allocator: AllocatorName = BudgetConfig.allocator
    candidates: Annotated[tuple[Candidate, ...], Field(min_length=1), Unique] = BudgetConfig.candidates


class KV(Section):
    config_type: ClassVar[type] = KVConfig
    quant: Quant = Quant()
    precision: Precision | None = KVConfig.precision
    selection: Selection = Selection()
    budget: Budget | None = KVConfig.budget

    def config(self) -> KVConfig:
        return super().config()

    @model_validator(mode="after")
    def _convention_used(self) -> KV:
        # an unused setting must keep its default: never silently ignored, and one run key per meaning
        if self.quant.convention != QuantConfig.convention and not convention_applies(self.config()):
            why = "only used by asymmetric int8/int4/int2 (this kv sends none: symmetric, or no int scheme)"
            raise Problems([("quant.convention", None, why)])
        return self


# ---- eval, train, runtime ----


class Text(Section):
    """Text-to-text settings (text_answer, text_analysis): how much the sharer may write, greedily."""

    config_type: ClassVar[type] = TextConfig
    max_new_tokens: TokenCount = TextConfig.max_new_tokens


class Eval(Section):
    datasets: Annotated[tuple[DatasetName, ...], Field(min_length=1), Unique]
    split: NonEmptyStr = "test"
    limit: Limit = None
    protocol: Literal["logits", "generate"] = EvalConfig.protocol
    max_new_tokens: TokenCount = EvalConfig.max_new_tokens
    batch_size: PositiveInt = EvalConfig.batch_size
    baselines: Annotated[tuple[Literal[BASELINES], ...], Unique] = ("receiver", "c2c_fp16")
    text: Text | None = None  # null: the defaults (left out of the run key, so older keys stay valid)
    latent: lat.LatentEval | None = None  # the trained latent wire of the latent_* settings (runner.schema_latent)

    def config(self) -> EvalConfig:
        """What scoring consumes (qc2c.config.EvalConfig); `text: null` is the default TextConfig."""
        text = self.text.config() if self.text is not None else TextConfig()
        return EvalConfig(
            protocol=self.protocol, max_new_tokens=self.max_new_tokens, batch_size=self.batch_size, text=text
        )

    @model_validator(mode="after")
    def _generate_only(self) -> Eval:
        if self.max_new_tokens != EvalConfig.max_new_tokens and self.protocol != "generate":  # unused: keep default
            raise Problems([("max_new_tokens", None, "only used by protocol 'generate' (protocol is 'logits')")])
        if self.text is not None and not set(self.baselines) & set(TEXT):
            raise Problems([("text", None, f"only used by the baselines {', '.join(TEXT)} (none is listed)")])
        return self


class Projector(Section):
    """C2CProjector hyper-parameters; defaults are the published 0.6B+0.5B recipe (docs/c2c.md §6)."""

    config_type: ClassVar[type] = ProjectorConfig
    type: Literal["C2CProjector"] = ProjectorConfig.type
    hidden_dim: PositiveInt = ProjectorConfig.hidden_dim
    intermediate_dim: PositiveInt = ProjectorConfig.intermediate_dim
    num_layers: Annotated[int, Strict(), Field(ge=3)] = ProjectorConfig.num_layers
    dropout: UnitInterval = ProjectorConfig.dropout
    initial_temperature: PositiveFloat = ProjectorConfig.initial_temperature
    final_temperature: PositiveFloat = ProjectorConfig.final_temperature
    anneal_steps: PositiveInt | None = ProjectorConfig.anneal_steps

    @model_validator(mode="after")
    def _temperature_anneals_down(self) -> Projector:
        if self.final_temperature > self.initial_temperature:
            raise Problems([("final_temperature", None, "must be <= initial_temperature (the gate anneals down)")])
        return self


class Optim(Section):
    config_type: ClassVar[type] = OptimConfig
    lr: PositiveFloat = OptimConfig.lr
    weight_decay: NonNegativeFloat = OptimConfig.weight_decay
    epochs: PositiveInt = OptimConfig.epochs
    max_steps: PositiveInt | None = OptimConfig.max_steps
    warmup_ratio: UnitInterval = OptimConfig.warmup_ratio
    max_grad_norm: PositiveFloat = OptimConfig.max_grad_norm
    batch_size: PositiveInt = OptimConfig.batch_size
    grad_accum: PositiveInt = OptimConfig.grad_accum
    scheduler: Literal["linear", "cosine", "constant"] = OptimConfig.scheduler


class Train(Section):
    config_type: ClassVar[type] = TrainConfig
    data: TrainData | None = None  # required with objective sft; the KD cache's rows with objective kd
    projector: Projector = Projector()
    layer_map: Literal["last_aligned", "k_nearest"] = TrainConfig.layer_map
    optim: Optim = Optim()
    qat: StrictBool = TrainConfig.qat
    save_steps: PositiveInt = TrainConfig.save_steps
    objective: Literal["sft", "kd"] = TrainConfig.objective  # kd: top-K logit distillation (runner.schema_kd)
    kd: KDTrain | None = TrainConfig.kd
    gradient_checkpointing: StrictBool = TrainConfig.gradient_checkpointing  # memory only: not in the run key
    method: Literal["c2c", "latent"] = TrainConfig.method  # latent: a latent wire, no fuser (runner.schema_latent)
    latent: lat.LatentTrain | None = None

    def config(self) -> TrainConfig:
        return super().config()

    @model_validator(mode="after")
    def _objective(self) -> Train:
        rules = lat.train_latent_problems(self) + (train_kd_problems(self) if self.method == "c2c" else [])
        problems = [(f.removeprefix("train."), None, why) for f, _, why in rules]
        if problems:
            raise Problems(problems)
        return self


class Runtime(Section):
    config_type: ClassVar[type] = RuntimeConfig
    device: Annotated[str, StringConstraints(pattern=DEVICE_PATTERN)] = RuntimeConfig.device
    dtype: Literal["float32", "float16", "bfloat16"] = RuntimeConfig.dtype
    seed: NonNegativeInt = RuntimeConfig.seed
    container: Literal["auto", "docker", "native"] = "auto"
    max_sample_errors: NonNegativeInt = 0


# ---- the manifest ----


class Manifest(Section):
    format_version: Annotated[int, Strict()] = Field(alias="schema")
    name: RunName
    milestone: RunName = "custom"
    kind: Literal["eval", "train", "bench", "kd_cache"] = "eval"
    description: str = ""
    pair: Pair
    fuser: FuserSource | None = None
    kv: KV = KV()
    eval: Eval | None = None
    train: Train | None = None
    kd_cache: KDCacheSection | None = None  # kind: kd_cache (runner.schema_kd)
    runtime: Runtime = Runtime()

    @field_validator("format_version")
    @classmethod
    def _supported_version(cls, value: int) -> int:
        if value != FORMAT_VERSION:
            raise ValueError(f"unsupported schema version {value} (this qc2c reads schema: {FORMAT_VERSION})")
        return value

    @model_validator(mode="after")
    def _sections_match_kind(self) -> Manifest:
        problems = (
            _kind_problems(self) + _fuser_problems(self) + kd_cache_problems(self) + lat.eval_latent_problems(self)
        )
        if self.eval is not None:
            problems += [("eval.baselines", None, why) for why in setting_problems(self.eval.baselines, self.pair)]
        if problems:
            raise Problems(problems)
        return self

    def run_key(self) -> str:
        """sha256 of canonical JSON without labels or choices that cannot change a number (where it runs)."""
        exclude = {"name": True, "description": True, "milestone": True, "runtime": {"container", "max_sample_errors"}}
        if self.eval is not None and self.eval.text is None:
            exclude["eval"] = {"text"}
        # kv.quant.convention enters the key only where it changes numbers from what earlier keys meant: every run
        # before the field was observer (so an observer manifest keeps its earlier key, run folder and golden
        # rows), and a kv without an asymmetric int scheme is unaffected by it
        if self.kv.quant.convention == "observer" or not convention_applies(self.kv.config()):
            exclude["kv"] = {"quant": {"convention"}}
        exclude.update(kd_run_key_exclude(self))
        lat.latent_run_key_exclude(self, exclude)
        data = self.model_dump(mode="json", by_alias=True, exclude=exclude)
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _kind_problems(m: Manifest) -> list[tuple[str, str | None, str]]:
    problems: list[tuple[str, str | None, str]] = []
    if m.kind == "eval" and m.eval is None:
        problems.append(("eval", "kind", "required when kind: eval (datasets to evaluate)"))
    if m.kind == "train" and m.train is None:
        problems.append(("train", "kind", "required when kind: train (data, projector, optim)"))
    if m.kind != "train" and m.train is not None:
        problems.append(("train", None, f"only allowed with kind: train (kind is {m.kind!r})"))
    if m.kind == "train" and m.eval is not None:
        why = "not allowed with kind: train (evaluate with a kind: eval manifest whose fuser is from_run)"
        problems.append(("eval", None, why))
    return problems


def _fuser_problems(m: Manifest) -> list[tuple[str, str | None, str]]:
    if m.fuser is not None or m.kind != "eval" or m.eval is None:
        return []
    if not m.eval.baselines or not set(m.eval.baselines) <= NO_FUSER_BASELINES:
        allowed = ", ".join(sorted(NO_FUSER_BASELINES))
        why = f"required for kind: eval (only a run whose eval.baselines are all in [{allowed}] needs none)"
        return [("fuser", "kind", why)]
    if m.kv != KV():  # unused without a fuser: must keep its defaults
        return [("kv", None, "set without a fuser: only the receiver/sharer baselines run, so kv would be unused")]
    return []
