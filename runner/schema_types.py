"""Building blocks of the manifest schema (runner/schema.py): name patterns and their help texts, the
cross-field `Problems` error, the constrained types (defined once, reused by every section) and `Section`.

Every type is bounded, so a value the schema accepts is one the run can use: names fit a file name with the
run tag, integers fit the int32 that torch and the kernels take (a seed of 2**64 is refused, not wrapped),
floats are finite (`.inf` is not a learning rate), device indices are ASCII digits, layer ranges and
limits stay within what a model and a data set can have.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict, StringConstraints

from qc2c.eval.datasets import DATASETS
from qc2c.kv.budget import ALLOCATORS
from qc2c.kv.grouping import AXES
from qc2c.kv.precision import MAX_LAYER, parse_layer_range  # noqa: F401  (MAX_LAYER: re-exported)
from qc2c.kv.quant import SCHEMES
from qc2c.kv.selection import SELECTORS
from qc2c.plugins import Plugins

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]*$"
MAX_NAME_LEN = 100  # run folder <name>-<run_key[:10]> stays far below the 255 bytes of a file name
DEVICE_PATTERN = r"^(auto|cpu|cuda|cuda:[0-9]{1,3})$"  # [0-9], not \d: pydantic's \d takes any Unicode digit
MAX_INT = 2**31 - 1  # seeds, sizes and counts: the int32 range torch, numpy and the C++ kernels accept
MAX_NEW_TOKENS = 4096  # tokens one generated answer may take
SHA256_PATTERN = r"^[0-9a-f]{64}$"
REPO_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$"
PATTERN_HELP = {  # what each pattern allows, in words, for error messages
    NAME_PATTERN: "must be lower-case letters, digits, '_', '.' or '-', starting with a letter or digit",
    DEVICE_PATTERN: "allowed: auto, cpu, cuda, cuda:N",
    SHA256_PATTERN: "must be 64 lower-case hex digits (sha256sum of the checkpoint content)",
    REPO_PATTERN: "must be a Hugging Face repo id 'owner/name'",
}


class Problems(ValueError):
    """Cross-field problems as (dotted field, anchor, message); `anchor` is the dotted path whose line to
    report (a missing `train:` points at the `kind:` line), None meaning the field itself."""

    def __init__(self, items: list[tuple[str, str | None, str]]) -> None:
        self.items = items
        super().__init__("; ".join(f"{field}: {message}" for field, _, message in items))


# ---- constrained types, defined once ----


def _parse_limit(value: object) -> int | tuple[int, int] | None:
    """null (all), N (the first N items) or [start, end) → None | int | (start, end)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_INT:
        return value
    if isinstance(value, list | tuple) and len(value) == 2:
        start, end = value
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value) and 0 <= start < end <= MAX_INT:
            return (start, end)
    allowed = f"null, N > 0, or [start, end) with start < end; at most {MAX_INT}"
    raise ValueError(f"limit {value!r} is not allowed (allowed: {allowed})")


Fraction = Annotated[float, Strict(), Field(gt=0, le=1, allow_inf_nan=False)]
UnitInterval = Annotated[float, Strict(), Field(ge=0, lt=1, allow_inf_nan=False)]
PositiveFloat = Annotated[float, Strict(), Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False)]
PositiveInt = Annotated[int, Strict(), Field(gt=0, le=MAX_INT)]
NonNegativeInt = Annotated[int, Strict(), Field(ge=0, le=MAX_INT)]
TokenCount = Annotated[int, Strict(), Field(gt=0, le=MAX_NEW_TOKENS)]
StrictBool = Annotated[bool, Strict()]
NonEmptyStr = Annotated[str, StringConstraints(min_length=1)]
RunName = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=MAX_NAME_LEN)]
Sha256 = Annotated[str, StringConstraints(pattern=SHA256_PATTERN)]
HubRepo = Annotated[str, StringConstraints(pattern=REPO_PATTERN)]
LayerRange = Annotated[tuple[int, ...], BeforeValidator(parse_layer_range)]
Limit = Annotated[int | tuple[int, int] | None, BeforeValidator(_parse_limit)]
Axis = Literal[AXES]  # the grouping axes qc2c.kv.grouping implements


def _member_of(family: Plugins) -> AfterValidator:
    """A str checked by `family.get` (UnknownPlugin is a ValueError: a field error with a did-you-mean)."""

    def check(value: str) -> str:
        family.get(value)
        return value

    return AfterValidator(check)


SchemeName = Annotated[str, _member_of(SCHEMES)]
SelectorName = Annotated[str, _member_of(SELECTORS)]
AllocatorName = Annotated[str, _member_of(ALLOCATORS)]
DatasetName = Annotated[str, _member_of(DATASETS)]


def _unique(values: tuple[str, ...]) -> tuple[str, ...]:
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"listed more than once: {', '.join(repeated)} (each name may appear once)")
    return values


def _candidate(value: str) -> str:
    return value if value == "drop" else SCHEMES.get(value) and value


Candidate = Annotated[str, AfterValidator(_candidate)]
Unique = AfterValidator(_unique)


class Section(BaseModel):
    """A manifest section. One that qc2c consumes names its qc2c config (`config_type`, from qc2c.config): the
    config's fields take their defaults from it, and `config()` builds it from the validated values."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    config_type: ClassVar[type | None] = None

    def config(self) -> Any:
        """This section as its `config_type` (nested sections built alike; fields the config lacks are the
        runner's and stay here)."""
        if self.config_type is None:
            raise TypeError(f"{type(self).__name__} has no qc2c config")
        return self.config_type(**{f.name: as_config(getattr(self, f.name)) for f in fields(self.config_type)})


def as_config(value: Any) -> Any:
    """A section as its qc2c config, a tuple of them as a tuple of configs, any other value as it is."""
    if isinstance(value, Section):
        return value.config()
    if isinstance(value, tuple):
        return tuple(as_config(v) for v in value)
    return value
