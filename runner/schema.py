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
from typing import Annotated, Literal

from pydantic import Field, Strict, StringConstraints, field_validator, model_validator

from qc2c.eval.settings import BASELINES, NO_FUSER, TEXT, setting_problems
from qc2c.kv.quant import CONVENTIONS, convention_applies
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
    scheme: SchemeName = "int8"
    symmetric: StrictBool = False
    key_axis: Axis = "channel"
    value_axis: Axis = "token"
    group_size: PositiveInt | None = 64
    scale_dtype: Literal["float16", "float32"] = "float16"
    # asymmetric int8/int4/int2 only: kivi (KIVI's math, a float min per group) | observer (integer zero point;
    # what every run before this field used, kept for reproducibility; see qc2c.kv.schemes.uniform)
    convention: Literal[CONVENTIONS] = "kivi"


class Override(Section):
    layers: LayerRange
    scheme: SchemeName


class Precision(Section):
    """Per RECEIVER layer precision; `default: null` means kv.quant.scheme."""

    default: SchemeName | None = None
    overrides: tuple[Override, ...] = ()
    last_fp16: PositiveInt | None = None

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
    method: SelectorName = "all"
    keep: Fraction = 1.0
    min_tokens: PositiveInt = 1
    knorm_sign: Literal["low", "high"] = "low"
    window: PositiveInt = 8
    seed: NonNegativeInt = 0

    @model_validator(mode="after")
    def _settings_match_method(self) -> Selection:
        problems = []
        if self.method == "all" and self.keep != 1.0:
            problems.append(("keep", None, "method 'all' sends every token (allowed: keep 1.0, or choose a selector)"))
        # unused settings must keep their defaults: never silently ignored, and one run key per meaning
        if self.knorm_sign != "low" and self.method != "knorm":
            problems.append(("knorm_sign", None, f"only used by method 'knorm' (method is {self.method!r})"))
        if self.window != 8 and self.method != "attention":
            problems.append(("window", None, f"only used by method 'attention' (method is {self.method!r})"))
        if problems:
            raise Problems(problems)
        return self


class Budget(Section):
    bytes_per_sample: PositiveInt
    allocator: AllocatorName = "greedy"
    candidates: Annotated[tuple[Candidate, ...], Field(min_length=1), Unique] = ("drop", "int4", "int8")


class KV(Section):
    quant: Quant = Quant()
    precision: Precision | None = None
    selection: Selection = Selection()
    budget: Budget | None = None

    @model_validator(mode="after")
    def _convention_used(self) -> KV:
        # an unused setting must keep its default: never silently ignored, and one run key per meaning
        if self.quant.convention != "kivi" and not convention_applies(self.model_dump(mode="json")):
            why = "only used by asymmetric int8/int4/int2 (this kv sends none: symmetric, or no int scheme)"
            raise Problems([("quant.convention", None, why)])
        return self


# ---- eval, train, runtime ----


class Text(Section):
    """Text-to-text settings (text_answer, text_analysis): how much the sharer may write, greedily."""

    max_new_tokens: TokenCount = 64


class Eval(Section):
    datasets: Annotated[tuple[DatasetName, ...], Field(min_length=1), Unique]
    split: NonEmptyStr = "test"
    limit: Limit = None
    protocol: Literal["logits", "generate"] = "logits"
    max_new_tokens: TokenCount = 64
    batch_size: PositiveInt = 16
    baselines: Annotated[tuple[Literal[BASELINES], ...], Unique] = ("receiver", "c2c_fp16")
    text: Text | None = None  # null: the defaults (left out of the run key, so older keys stay valid)

    @model_validator(mode="after")
    def _generate_only(self) -> Eval:
        if self.max_new_tokens != 64 and self.protocol != "generate":  # unused: must keep its default
            raise Problems([("max_new_tokens", None, "only used by protocol 'generate' (protocol is 'logits')")])
        if self.text is not None and not set(self.baselines) & set(TEXT):
            raise Problems([("text", None, f"only used by the baselines {', '.join(TEXT)} (none is listed)")])
        return self


class TrainData(Section):
    """A Hugging Face dataset id or a local JSONL of chat conversations (exactly one)."""

    dataset: NonEmptyStr | None = None
    jsonl: NonEmptyStr | None = None
    split: NonEmptyStr = "train"
    limit: PositiveInt | None = None
    max_length: PositiveInt = 2048

    @model_validator(mode="after")
    def _exactly_one_source(self) -> TrainData:
        if (self.dataset is None) == (self.jsonl is None):
            raise ValueError("exactly one of dataset / jsonl is required")
        return self


class Projector(Section):
    """C2CProjector hyper-parameters; defaults are the published 0.6B+0.5B recipe (docs/c2c.md §6)."""

    type: Literal["C2CProjector"] = "C2CProjector"
    hidden_dim: PositiveInt = 1024
    intermediate_dim: PositiveInt = 1024
    num_layers: Annotated[int, Strict(), Field(ge=3)] = 3
    dropout: UnitInterval = 0.1
    initial_temperature: PositiveFloat = 1.0
    final_temperature: PositiveFloat = 0.001
    anneal_steps: PositiveInt | None = None

    @model_validator(mode="after")
    def _temperature_anneals_down(self) -> Projector:
        if self.final_temperature > self.initial_temperature:
            raise Problems([("final_temperature", None, "must be <= initial_temperature (the gate anneals down)")])
        return self


class Optim(Section):
    lr: PositiveFloat = 1.0e-4
    weight_decay: NonNegativeFloat = 0.01
    epochs: PositiveInt = 1
    max_steps: PositiveInt | None = None
    warmup_ratio: UnitInterval = 0.1
    max_grad_norm: PositiveFloat = 1.0
    batch_size: PositiveInt = 4
    grad_accum: PositiveInt = 8
    scheduler: Literal["linear", "cosine", "constant"] = "linear"


class Train(Section):
    data: TrainData
    projector: Projector = Projector()
    layer_map: Literal["last_aligned", "k_nearest"] = "last_aligned"
    optim: Optim = Optim()
    qat: StrictBool = False
    save_steps: PositiveInt = 500


class Runtime(Section):
    device: Annotated[str, StringConstraints(pattern=DEVICE_PATTERN)] = "auto"
    dtype: Literal["float32", "float16", "bfloat16"] = "bfloat16"
    seed: NonNegativeInt = 0
    container: Literal["auto", "docker", "native"] = "auto"
    max_sample_errors: NonNegativeInt = 0


# ---- the manifest ----


class Manifest(Section):
    format_version: Annotated[int, Strict()] = Field(alias="schema")
    name: RunName
    milestone: RunName = "custom"
    kind: Literal["eval", "train", "bench"] = "eval"
    description: str = ""
    pair: Pair
    fuser: FuserSource | None = None
    kv: KV = KV()
    eval: Eval | None = None
    train: Train | None = None
    runtime: Runtime = Runtime()

    @field_validator("format_version")
    @classmethod
    def _supported_version(cls, value: int) -> int:
        if value != FORMAT_VERSION:
            raise ValueError(f"unsupported schema version {value} (this qc2c reads schema: {FORMAT_VERSION})")
        return value

    @model_validator(mode="after")
    def _sections_match_kind(self) -> Manifest:
        problems = _kind_problems(self) + _fuser_problems(self)
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
        if self.kv.quant.convention == "observer" or not convention_applies(self.kv.model_dump(mode="json")):
            exclude["kv"] = {"quant": {"convention"}}
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
