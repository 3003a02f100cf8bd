"""The model of `results/<dataset>.json`: what one run measured on one dataset, for every setting.

The runner fills it from the per-sample records of `progress/<dataset>.jsonl`; the golden store validates
it and turns each setting into a row. Every key has a description (lm-eval's `result_schema.py` habit), raw
counts sit next to rates (`n`, `n_correct`, `accuracy`) so a validator can recompute the rates instead of
trusting them, and `dataset.n_expected` sits beside `n` (lm-eval's original vs effective sample counts), so a
file written from one chunk of the data cannot pass as a full result (docs/golden.md §3, failure mode 5).

Settings: the compressed message path of the manifest's `kv` section is stored under the key
`COMPRESSED` ("compressed"); baselines computed in the same run on the same items under their manifest names
(`receiver`, `sharer`, `c2c_fp16`). Metric math lives in `qc2c.eval.metrics`; this module only holds values.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_serializer, model_validator

from qc2c.errors import ProblemsError
from qc2c.eval.settings import ALONE, BASELINES, COMPRESSED, NO_FUSER, TEXT  # noqa: F401  (re-exported)
from runner import fsio

RESULTS_SCHEMA = 1
MAX_SUBJECTS = 8  # per-subject blocks only for sets with a few subjects (the demo's two), not MMLU's 57
TEXT_ONLY = ALONE  # settings that send nothing (no message bytes) and load no fuser

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Count = Annotated[int, Field(ge=0)]
NonNegative = Annotated[float, Field(ge=0.0)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class Part(BaseModel):
    # an infinite value (a KL where the setting ruled out the reference's answer) is the JSON string
    # "Infinity": files stay standard JSON, and a bare Infinity / NaN token in one is refused as a hand edit
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, ser_json_inf_nan="strings")

    def dump(self, exclude: set[str] | None = None) -> dict[str, Any]:
        """Plain JSON data (non-finite floats as strings), what the files hold."""
        return json.loads(self.model_dump_json(by_alias=True, exclude=exclude))


def _ordered(value: tuple[float, float]) -> tuple[float, float]:
    if not value[0] <= value[1]:
        raise ValueError(f"interval lower bound {value[0]} is above upper bound {value[1]}")
    return value


Interval = Annotated[tuple[float, float], AfterValidator(_ordered)]  # [lo, hi] in JSON


class Distribution(Part):
    """Summary of one per-sample quantity over the evaluated samples."""

    mean: NonNegative = Field(description="arithmetic mean over samples")
    p50: NonNegative = Field(description="median over samples")
    p95: NonNegative = Field(description="95th percentile over samples")


class ByteBreakdown(Part):
    """Mean bytes per sample by part of the packed message; the parts sum to `BytesStats.mean`."""

    payload: NonNegative = Field(description="packed quantized codes (the sharer's K and V)")
    scales: NonNegative = Field(description="scales and zero points")
    indices: NonNegative = Field(description="positions of the sent tokens (a list or a bitmap, whichever is smaller)")
    header: NonNegative = Field(description="message header (shapes, schemes, layer plan)")


class BytesStats(Distribution):
    """Measured message size per sample: `len(Message.to_bytes())`, never an estimate (docs/golden.md §3)."""

    breakdown: ByteBreakdown = Field(description="mean bytes per sample by message part")


class Fidelity(Part):
    """Agreement with the uncompressed C2C run (`c2c_fp16`) on the same items."""

    flip_rate: Fraction = Field(description="fraction of items whose predicted answer differs from c2c_fp16")
    mean_kl: NonNegative = Field(description="mean KL(c2c_fp16 || this) of the option distribution, nats")


class Paired(Part):
    """Paired comparison of this setting against one baseline on the same items."""

    diff: float = Field(ge=-1.0, le=1.0, description="accuracy(this) - accuracy(baseline)")
    ci95: Interval = Field(description="paired bootstrap 95% interval of `diff`")
    mcnemar_p: Fraction = Field(description="exact McNemar two-sided p-value")
    n_discordant: Count = Field(description="items where exactly one of the two is correct")


class Timing(Part):
    """Mean seconds per sample of each stage (batched wall time divided by the batch size)."""

    sharer_prefill_s: NonNegative | None = Field(None, description="sharer prefill of the prompt")
    encode_s: NonNegative | None = Field(None, description="select + quantize + pack the message")
    decode_s: NonNegative | None = Field(None, description="unpack + dequantize the message")
    fuse_s: NonNegative | None = Field(None, description="projector + in-place fusion into the receiver cache")
    receiver_s: NonNegative | None = Field(None, description="receiver prefill / scoring")
    sharer_decode_s: NonNegative | None = Field(None, description="the sharer writing its text (text settings)")


class SubjectResult(Part):
    """One setting on the items of one subject (e.g. the demo's `shared` / `sharer_only` facts)."""

    n: Count = Field(description="samples of this subject")
    n_correct: Count = Field(description="of them answered correctly")
    accuracy: Fraction = Field(description="n_correct / n")
    ci95: Interval = Field(description="95% Wilson interval of accuracy")
    paired: dict[str, Paired] = Field(default_factory=dict, description="baseline name -> paired statistics")

    @model_validator(mode="after")
    def _rate(self) -> SubjectResult:
        if self.n_correct > self.n or (
            self.n and not math.isclose(self.accuracy, self.n_correct / self.n, abs_tol=1e-9)
        ):
            raise ValueError(f"accuracy {self.accuracy} != n_correct/n = {self.n_correct}/{self.n}")
        return self


class QAStats(Part):
    """Short-answer scores of a latent setting on some items (qc2c.latent.scorer): the value word is the answer."""

    n: Count = Field(description="samples scored")
    exact_match: Fraction = Field(description="mean exact match of the greedy answer (SQuAD normalisation)")
    f1: Fraction = Field(description="mean token F1 of the greedy answer")
    first_acc: Fraction = Field(description="first-token acceptance: the greedy first token is the answer's")
    nll_per_token: NonNegative = Field(description="mean NLL per answer token (value and EOS), teacher-forced")


class QAResult(QAStats):
    subjects: dict[str, QAStats] | None = Field(None, description="per subject, as `subjects` of the setting")


class SettingResult(Part):
    """What one setting (the compressed path or one baseline) scored on the dataset."""

    n: Count = Field(description="samples evaluated (errors included, counted as incorrect)")
    n_correct: Count = Field(description="samples answered correctly")
    n_errors: Count = Field(description="samples that raised an exception; any error fails the row by default")
    accuracy: Fraction = Field(description="n_correct / n")
    ci95: Interval = Field(description="95% Wilson interval of accuracy")
    bytes: BytesStats | None = Field(description="message bytes per sample; null for text-only baselines")
    n_tokens_sent: Distribution | None = Field(
        description="prompt tokens actually sent per sample, after rounding and min_tokens"
    )
    n_tokens_prompt_mean: NonNegative | None = Field(description="mean sharer prompt length in tokens")
    compression_ratio: NonNegative | None = Field(
        description="c2c_fp16 message bytes of the same tokens / message bytes (mean over samples); 1 for c2c_fp16"
    )
    fidelity: Fidelity | None = Field(description="agreement with c2c_fp16; null for c2c_fp16 itself")
    paired: dict[str, Paired] = Field(default_factory=dict, description="baseline name -> paired statistics")
    timing: Timing = Field(default_factory=Timing, description="mean seconds per sample by stage")
    oracle: bool = Field(
        False, description="the selection reads the receiver's state, which a real sender lacks (an upper bound)"
    )
    subjects: dict[str, SubjectResult] | None = Field(
        None, description=f"per subject, when the items carry 2..{MAX_SUBJECTS} subjects (null otherwise)"
    )
    qa: QAResult | None = Field(None, description="short-answer scores (latent settings only; absent otherwise)")

    @model_serializer(mode="wrap")
    def _without_empty_qa(self, handler: Any) -> dict[str, Any]:
        # absent rather than null: rows and results written before the field keep their bytes and seals
        data = handler(self)
        if data.get("qa") is None:
            data.pop("qa", None)
        return data

    @model_validator(mode="after")
    def _counts(self) -> SettingResult:
        problems = []
        if self.n_correct > self.n:
            problems.append(f"n_correct {self.n_correct} > n {self.n}")
        if self.n_correct + self.n_errors > self.n:
            problems.append(
                f"n_correct {self.n_correct} + n_errors {self.n_errors} > n {self.n} (errors are never correct)"
            )
        if self.n and not math.isclose(self.accuracy, self.n_correct / self.n, abs_tol=1e-9):
            problems.append(f"accuracy {self.accuracy} != n_correct/n = {self.n_correct / self.n}")
        if self.n and not self.ci95[0] - 1e-9 <= self.accuracy <= self.ci95[1] + 1e-9:
            problems.append(f"ci95 [{self.ci95[0]}, {self.ci95[1]}] does not contain accuracy {self.accuracy}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class PairInfo(Part):
    receiver: str = Field(description="receiver model: HF id, local dir or tiny:<name>")
    sharer: str = Field(description="sharer model: HF id, local dir or tiny:<name>")
    alignment: Literal["none", "first", "longest"] = Field(description="token alignment receiver -> sharer")
    receiver_revision: str = Field(description="resolved receiver revision (commit hash when known)")
    sharer_revision: str = Field(description="resolved sharer revision (commit hash when known)")


class FuserInfo(Part):
    source: str | None = Field(description="where the fuser came from (path, hub repo/subfolder, from_run)")
    sha256: Sha256 | None = Field(description="sha256 of the loaded checkpoint content")
    loaded: bool = Field(description="projector weights were actually loaded (strictly) for the C2C settings")


class DatasetInfo(Part):
    name: str = Field(description="dataset plug-in name (qc2c.eval.datasets.DATASETS)")
    split: str = Field(description="split evaluated")
    fingerprint: str = Field(min_length=1, description="content fingerprint of the evaluated items")
    n_total: Count = Field(description="items in the split")
    limit: int | tuple[int, int] | None = Field(description="the manifest's eval.limit (N or [start, end))")
    n_declared: Count | None = Field(description="items the limit selects; null when no limit")
    notes: list[str] = Field(default_factory=list, description="loader notes (e.g. numeric answer keys mapped)")

    @property
    def n_expected(self) -> int:
        """How many samples a full result must have: the declared subset, else the whole split."""
        return self.n_total if self.n_declared is None else self.n_declared


class PrecisionView(Part):
    """Per-layer precision, both views of docs/kv-compression.md §6."""

    receiver: list[str] = Field(description="scheme asked for per receiver layer (index = receiver layer)")
    sharer: list[str | None] = Field(description="scheme sent per sharer layer; null = layer not sent")


class ProvenanceSummary(Part):
    commit: str | None = Field(description="git commit of the code that ran (40 hex)")
    dirty: bool | None = Field(description="the working tree had uncommitted changes")
    image_digest: str | None = Field(description="container image digest; null when run natively")
    created: str | None = Field(description="ISO 8601 UTC time the results file was written")


class DatasetResult(Part):
    """results/<dataset>.json: one run of one manifest on one dataset, every setting side by side."""

    format_version: Literal[1] = Field(alias="schema", description="results file format version")
    run_key: Sha256 = Field(description="Manifest.run_key(): sha256 of the semantic manifest")
    manifest: str = Field(description="manifest name")
    milestone: str = Field(description="manifest milestone (golden grouping)")
    kind: Literal["eval"] = Field(description="manifest kind; only eval runs produce results files")
    pair: PairInfo = Field(description="the model pair")
    fuser: FuserInfo = Field(description="the C2C fuser used by the C2C settings")
    kv: dict[str, Any] | None = Field(
        description="the manifest's kv section as dumped (quant, precision, selection, budget); null for a "
        "baseline-only run (receiver/sharer alone), which has no compressed setting"
    )
    dataset: DatasetInfo = Field(description="what was evaluated")
    protocol: Literal["logits", "generate"] = Field(description="eval.protocol")
    settings: dict[str, SettingResult] = Field(
        description=f"'{COMPRESSED}' (the kv message path) and each baseline ({', '.join(BASELINES)})"
    )
    bytes_closed_form_drift: Count = Field(
        description="sum over samples of |measured nbytes - closed-form nbytes| of the compressed message; 0"
    )
    precision: PrecisionView | None = Field(description="per-layer precision of the compressed setting")
    provenance: ProvenanceSummary = Field(description="summary of provenance.json")
    progress_sha256: Sha256 | None = Field(
        None, description="sha256 of the progress/<dataset>.jsonl lines these numbers were computed from"
    )

    @model_validator(mode="after")
    def _setting_names(self) -> DatasetResult:
        unknown = sorted(set(self.settings) - {COMPRESSED, *BASELINES})
        if unknown:
            raise ValueError(f"unknown settings {unknown} (allowed: {COMPRESSED}, {', '.join(BASELINES)})")
        if not self.settings:
            raise ValueError("settings is empty")
        if self.kv is None and COMPRESSED in self.settings:
            raise ValueError(f"settings has '{COMPRESSED}' but kv is null (the compressed setting is the kv section)")
        return self


class ResultsError(ProblemsError):
    """A results file is unreadable or invalid; `.problems` holds `file: field: message` lines."""


def format_validation_error(prefix: str, exc: ValidationError) -> list[str]:
    """One `prefix: dotted.loc: message` line per pydantic error (the "Value error, " prefix dropped)."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"]) or "(root)"
        lines.append(f"{prefix}: {loc}: {err['msg'].removeprefix('Value error, ')}")
    return lines


class NonStandardJSON(ValueError):
    """A bare NaN / Infinity / -Infinity token: not JSON, and never written by qc2c (message: `line: ...`)."""


def strict_json(text: str, **hooks: Any) -> Any:
    """json.loads that refuses NaN / Infinity tokens (Python accepts them), naming the line of the first one."""

    def refuse(token: str) -> Any:
        match = re.search(rf"[:\[,]\s*{re.escape(token)}\s*[,\]}}\n]", text)
        line = text.count("\n", 0, match.start()) + 1 if match else 0
        raise NonStandardJSON(f"{line}: json: non-standard value {token} (not JSON; edited by hand?)")

    return json.loads(text, parse_constant=refuse, **hooks)


def load_result(path: str | Path) -> DatasetResult:
    """Read and validate one results file; every problem is raised at once as a ResultsError."""
    path = Path(path)
    try:
        data = strict_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError([f"{path}: file not found"]) from None
    except (UnicodeDecodeError, OSError) as exc:
        raise ResultsError([f"{path}: unreadable: {exc}"]) from None
    except json.JSONDecodeError as exc:
        raise ResultsError([f"{path}:{exc.lineno}: json: {exc.msg}"]) from None
    except NonStandardJSON as exc:
        raise ResultsError([f"{path}:{exc}"]) from None
    try:
        return DatasetResult.model_validate(data)
    except ValidationError as exc:
        raise ResultsError(format_validation_error(str(path), exc)) from None


def write_result(path: str | Path, result: DatasetResult) -> None:
    """Atomic write through runner.fsio (the one door for persistent writes)."""
    fsio.atomic_write_json(path, result.dump())
