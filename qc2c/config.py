"""The typed settings qc2c consumes: frozen dataclasses, the one place their defaults live.

Each class mirrors a manifest section (docs/manifest.md): `runner/schema.py` validates a manifest with pydantic,
takes every field's default from the class here and builds these values with `Section.config()`; qc2c functions
take them, never plain dicts. `from_json` builds one from a JSON section (a manifest read without the runner:
missing keys take the defaults below). Range and cross-field checks live in the schema; what needs a model
(layer counts) is checked where the model is known.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from qc2c.latent.config import LatentConfig

T = TypeVar("T")


# ---- kv: what the message path sends ----


@dataclass(frozen=True)
class QuantConfig:
    """`kv.quant`: the scheme and how keys and values are grouped (qc2c.kv.quant)."""

    scheme: str = "int8"
    symmetric: bool = False
    key_axis: str = "channel"
    value_axis: str = "token"
    group_size: int | None = 64
    scale_dtype: str = "float16"
    convention: str = "kivi"  # asymmetric int8/int4/int2 only (qc2c.kv.schemes.base.CONVENTIONS)


@dataclass(frozen=True)
class OverrideConfig:
    """One `kv.precision.overrides` entry: receiver layers (sorted indices) asking for `scheme`."""

    layers: tuple[int, ...]
    scheme: str


@dataclass(frozen=True)
class PrecisionConfig:
    """`kv.precision`, per RECEIVER layer (qc2c.kv.precision); `default: None` means kv.quant.scheme."""

    default: str | None = None
    overrides: tuple[OverrideConfig, ...] = ()
    last_fp16: int | None = None


@dataclass(frozen=True)
class SelectionConfig:
    """`kv.selection`: which sharer tokens are sent (qc2c.kv.selection); `keep` is the fraction KEPT."""

    method: str = "all"
    keep: float = 1.0
    min_tokens: int = 1
    knorm_sign: str = "low"  # method knorm only
    window: int = 8  # method attention only
    seed: int = 0  # method random only


@dataclass(frozen=True)
class BudgetConfig:
    """`kv.budget`: a byte budget per sample spent over `candidates` (qc2c.kv.budget)."""

    bytes_per_sample: int
    allocator: str = "greedy"
    candidates: tuple[str, ...] = ("drop", "int4", "int8")


@dataclass(frozen=True)
class KVConfig:
    """`kv`: the codec's settings (qc2c.kv.codec.build_codec)."""

    quant: QuantConfig = QuantConfig()
    precision: PrecisionConfig | None = None
    selection: SelectionConfig = SelectionConfig()
    budget: BudgetConfig | None = None


# ---- eval ----


@dataclass(frozen=True)
class TextConfig:
    """`eval.text`: how much the sharer may write for the text-to-text baselines."""

    max_new_tokens: int = 64


@dataclass(frozen=True)
class EvalConfig:
    """What scoring consumes of `eval` (qc2c.eval.settings.build_scorers); the rest is the runner's."""

    protocol: str = "logits"
    max_new_tokens: int = 64  # protocol generate only
    batch_size: int = 16
    text: TextConfig = TextConfig()


# ---- train ----


@dataclass(frozen=True)
class TrainDataConfig:
    """`train.data`: a Hugging Face dataset id or a local JSONL of chat conversations (exactly one)."""

    dataset: str | None = None
    jsonl: str | None = None
    split: str = "train"
    limit: int | None = None
    max_length: int = 2048


@dataclass(frozen=True)
class ProjectorConfig:
    """`train.projector`: C2CProjector hyper-parameters (the published 0.6B+0.5B recipe)."""

    type: str = "C2CProjector"
    hidden_dim: int = 1024
    intermediate_dim: int = 1024
    num_layers: int = 3
    dropout: float = 0.1
    initial_temperature: float = 1.0
    final_temperature: float = 0.001
    anneal_steps: int | None = None  # None: the whole run


@dataclass(frozen=True)
class OptimConfig:
    """`train.optim`."""

    lr: float = 1.0e-4
    weight_decay: float = 0.01
    epochs: int = 1
    max_steps: int | None = None
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    batch_size: int = 4
    grad_accum: int = 8
    scheduler: str = "linear"


@dataclass(frozen=True)
class KDConfig:
    """`train.kd` (objective kd): the top-K logit cache (a folder, or the runner's `from_run`) and the loss."""

    path: str | None = None  # a KD cache folder; the runner resolves `from_run` into it
    from_run: str | None = None
    temperature: float = 2.0
    kl_weight: float = 1.0
    hard_weight: float = 0.0  # CE against the teacher's top-1 id
    ce_weight: float = 0.0  # CE against the data's next token


@dataclass(frozen=True)
class KDCacheConfig:
    """`kd_cache` (kind: kd_cache): the teacher, its data and the cache's shape (qc2c.kd)."""

    data: TrainDataConfig
    teacher: str = "c2c_fp16"  # c2c_fp16 | compressed (the manifest's kv) | receiver | sharer
    top_k: int = 64
    random_negatives: int = 0
    packing: bool = False  # contiguous max_length blocks (single-model teachers); else one conversation per row
    shard_size: int = 256
    batch_size: int = 8


@dataclass(frozen=True)
class TrainConfig:
    """`train`: data, projector, layer map, optimizer, QAT, objective (qc2c.train.sft, qc2c.train.kd)."""

    data: TrainDataConfig | None = None  # None with objective kd: the rows come from the KD cache
    projector: ProjectorConfig = ProjectorConfig()
    layer_map: str = "last_aligned"
    optim: OptimConfig = OptimConfig()
    qat: bool = False
    save_steps: int = 500
    objective: str = "sft"  # sft | kd
    kd: KDConfig | None = None
    gradient_checkpointing: bool = False  # the receiver's layers, non-reentrant (qc2c.train.grad_ckpt)
    method: str = "c2c"  # c2c (a fuser) | latent (a latent wire, qc2c.latent.train)
    latent: LatentConfig | None = None


@dataclass(frozen=True)
class RuntimeConfig:
    """What qc2c consumes of `runtime` (where the runner places a run is the runner's)."""

    device: str = "auto"
    dtype: str = "bfloat16"
    seed: int = 0


# ---- building from JSON ----


def from_json(cls: type[T], data: Mapping[str, Any], *, ignore: tuple[str, ...] = ()) -> T:
    """`cls` from a JSON section (nested sections and lists become configs and tuples); missing keys take the
    defaults above; a key that is no field raises, unless it is in `ignore` (settings qc2c does not consume)."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names - set(ignore))
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown settings {unknown} (allowed: {', '.join(sorted(names))})")
    hints = get_type_hints(cls)
    return cls(**{name: _from_json(hints[name], data[name]) for name in names if name in data})


def _from_json(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        (hint,) = (a for a in args if a is not type(None))
        return _from_json(hint, value)
    if is_dataclass(hint):
        return from_json(hint, value)  # type: ignore[arg-type]
    if origin is tuple:
        return tuple(_from_json(args[0], v) for v in value)
    return value


def kv_config(data: Mapping[str, Any] | None) -> KVConfig:
    """A manifest's `kv` section (JSON; None or {} = every default) as a KVConfig."""
    return from_json(KVConfig, data or {})
