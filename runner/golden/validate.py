"""Golden rows and the rules a row must pass before a paper may cite it.

A row is one (run key, dataset, setting): a results file carries the compressed setting and the baselines of
the same run on the same items, and each is a point of its own in the tables and budget curves, so the setting
belongs in the key; without it the baselines of a run would collide with its compressed result.

Each rule is a small function `rule(row, ctx) -> list[str]` (problems, empty when fine), after
the failure modes in docs/golden.md §3: rows from one chunk (5), errors counted as results (2), a fuser that silently
did not load (1), estimated bytes (3). Rules that need the world (the run registry, the run folder, the
existing golden rows) look at `RuleContext`; `golden check` gives them the run folder when it is present.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from qc2c.config import KVConfig, PrecisionConfig, SelectionConfig
from qc2c.kv.quant import convention_applies
from qc2c.kv.selection import SELECTORS, is_oracle
from runner.golden.integrity import results_match_progress
from runner.results import (
    COMPRESSED,
    NO_FUSER,
    TEXT_ONLY,
    DatasetInfo,
    FuserInfo,
    PairInfo,
    Part,
    PrecisionView,
    ProvenanceSummary,
    SettingResult,
    Sha256,
)
from runner.schema import KV as KVSection

GOLDEN_SCHEMA = 2  # 2: rows carry content hashes (runner.golden.integrity)


class GoldenRow(Part):
    """One validated result: a setting of a run on a dataset, with everything needed to cite it."""

    run_key: Sha256 = Field(description="Manifest.run_key() of the run")
    setting: str = Field(description="'compressed' or a baseline name (receiver, sharer, c2c_fp16)")
    family: str = Field(
        description="setting family for plots: scheme[+convention][+mixed][+selector], budget+allocator[+convention],"
        " or the baseline"
    )
    manifest: str = Field(description="manifest name")
    milestone: str = Field(description="manifest milestone")
    protocol: str = Field(description="eval.protocol")
    pair: PairInfo = Field(description="the model pair")
    fuser: FuserInfo = Field(description="the fuser of the C2C settings")
    kv: dict[str, Any] | None = Field(description="the manifest's kv section (null for a baseline-only run)")
    dataset: DatasetInfo = Field(description="what was evaluated")
    metrics: SettingResult = Field(description="what this setting scored")
    bytes_closed_form_drift: int = Field(ge=0, description="measured vs closed-form bytes, summed over samples")
    precision: PrecisionView | None = Field(description="per-layer precision (compressed setting only)")
    provenance: ProvenanceSummary = Field(description="commit, dirty flag, image digest, creation time")
    run_dir: str = Field(description="run folder, relative to the repository when inside it")
    allowed: list[str] = Field(default_factory=list, description="rules deliberately waived with --allow")
    waived: list[str] = Field(default_factory=list, description="the problems those rules reported")
    progress_sha256: Sha256 | None = Field(None, description="sha256 of the progress lines the results came from")
    results_sha256: Sha256 | None = Field(None, description="sha256 of the results file the row was made from")
    row_sha256: Sha256 | None = Field(None, description="seal: sha256 of this row's content (runner.golden.integrity)")

    @property
    def key(self) -> str:
        return row_key(self.run_key, self.dataset.name, self.setting)

    @property
    def selection_method(self) -> str | None:
        """The token selector of a compressed row (None for the other settings)."""
        if self.setting != COMPRESSED:
            return None
        return row_kv(self.kv).selection.method if self.kv is not None else SelectionConfig.method

    def numbers(self) -> dict[str, Any]:
        """What a conflict compares: everything measured except timing; nothing about where or when."""
        numbers = self.model_dump(
            mode="json", include={"metrics", "dataset", "bytes_closed_form_drift", "precision", "fuser", "pair"}
        )
        numbers["metrics"].pop("timing")  # wall time differs between identical re-runs; it is not a result
        return numbers


class GoldenFile(Part):
    format_version: Literal[2] = Field(alias="schema", description="golden file format version")
    rows: dict[str, GoldenRow] = Field(default_factory=dict, description="row key -> row")


def row_key(run_key: str, dataset: str, setting: str) -> str:
    return f"{run_key}/{dataset}/{setting}"


def setting_family(setting: str, kv: dict[str, Any] | None) -> str:
    """`int4+kivi`, `int8+observer+mixed`, `int8+kivi+knorm`, `nf4`, `budget+greedy+kivi`, or the baseline name
    (the plot's marker). The quantizer convention is named where it changes numbers (an asymmetric int scheme is
    sent) and the row recorded it; rows merged before kv.quant.convention existed (all observer) carry none."""
    if setting != COMPRESSED or kv is None:
        return setting
    config = row_kv(kv)
    convention = (kv.get("quant") or {}).get("convention")  # as recorded, not the schema's default
    quantizer = [str(convention)] if convention and convention_applies(config) else []
    if config.budget is not None:
        return "+".join(["budget", config.budget.allocator, *quantizer])
    precision = config.precision or PrecisionConfig()
    parts = [precision.default or config.quant.scheme, *quantizer]
    if precision.overrides or precision.last_fp16:
        parts.append("mixed")
    if config.selection.method != "all":
        parts.append(config.selection.method)
    return "+".join(parts)


def row_kv(kv: dict[str, Any]) -> KVConfig:
    """A row's recorded `kv` section as the settings it ran with (read by the manifest schema, which fills in
    settings added after the row was merged with their defaults)."""
    return KVSection.model_validate(kv).config()


@dataclass
class RuleContext:
    """The world a row is checked against during merge; empty for `golden check` (row-only rules)."""

    registry: dict[str, Any] | None = None
    registry_path: Path | None = None
    run_dir: Path | None = None
    existing: dict[str, GoldenRow] = field(default_factory=dict)


Rule = Callable[[GoldenRow, RuleContext], list[str]]


# ---- rules ----


def declared_n(limit: int | tuple[int, int] | None, n_total: int) -> int | None:
    """Items a manifest's eval.limit selects: N -> first N, [start, end) -> that slice, clipped to the split."""
    if limit is None:
        return None
    if isinstance(limit, int):
        return max(0, min(limit, n_total))
    start, end = limit
    return max(0, min(end, n_total) - max(start, 0))


def row_has_full_n(row: GoldenRow, ctx: RuleContext) -> list[str]:
    data = row.dataset
    problems = []
    expected_declared = declared_n(data.limit, data.n_total)
    if data.n_declared != expected_declared:
        problems.append(
            f"dataset.n_declared is {data.n_declared} but eval.limit {data.limit} of {data.n_total} items "
            f"selects {expected_declared}"
        )
    if row.metrics.n != data.n_expected:
        problems.append(
            f"{row.setting}: n is {row.metrics.n} but the dataset has {data.n_expected} items "
            f"({'declared subset' if data.n_declared is not None else 'whole split'}); a partial result "
            "(one chunk) is not a golden row"
        )
    return problems


def row_rates_recomputed(row: GoldenRow, ctx: RuleContext) -> list[str]:
    """The stored 95% interval must be the Wilson interval of the stored counts (rates are recomputed, not trusted)."""
    from qc2c.eval.metrics import wilson_interval  # the one implementation of the metric math

    m = row.metrics
    if m.n == 0:
        return [f"{row.setting}: n is 0: nothing was scored"]
    lo, hi = wilson_interval(m.n_correct, m.n)
    if not (math.isclose(m.ci95[0], lo, abs_tol=1e-6) and math.isclose(m.ci95[1], hi, abs_tol=1e-6)):
        return [
            f"{row.setting}: ci95 [{m.ci95[0]:.6f}, {m.ci95[1]:.6f}] is not the Wilson interval "
            f"[{lo:.6f}, {hi:.6f}] of {m.n_correct}/{m.n}"
        ]
    return []


def row_has_no_errors(row: GoldenRow, ctx: RuleContext) -> list[str]:
    n_errors = row.metrics.n_errors
    if n_errors:
        return [f"{row.setting}: {n_errors} of {row.metrics.n} samples raised errors (see progress/ and logs/run.log)"]
    return []


def run_is_complete(row: GoldenRow, ctx: RuleContext) -> list[str]:
    if ctx.registry is None:
        return []
    entry = ctx.registry.get(row.run_key)
    where = ctx.registry_path or "registry"
    if entry is None:
        return [f"run key {row.run_key[:10]} is not in {where}"]
    status = entry.get("status") if isinstance(entry, dict) else None
    if status != "complete":
        reason = entry.get("reason") if isinstance(entry, dict) else None
        return [f"registry status is {status!r}, not 'complete'" + (f" ({reason})" if reason else "")]
    return []


def row_has_provenance(row: GoldenRow, ctx: RuleContext) -> list[str]:
    prov = row.provenance
    problems = []
    if not (prov.commit and re.fullmatch(r"[0-9a-f]{40}", prov.commit)):
        problems.append(f"provenance.commit is {prov.commit!r}, not a 40-hex git commit")
    if prov.dirty is None:
        problems.append("provenance.dirty is unknown")
    if not prov.created:
        problems.append("provenance.created is missing")
    if ctx.run_dir is not None:
        problems += _provenance_file_problems(row, ctx.run_dir / "provenance.json")
    return problems


def _provenance_file_problems(row: GoldenRow, path: Path) -> list[str]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [f"{path} is missing"]
    except (OSError, ValueError) as exc:
        return [f"{path} is unreadable: {exc}"]
    problems = []
    if doc.get("run_key") != row.run_key:
        problems.append(f"{path}: run_key {doc.get('run_key')!r} differs from the results file's")
    commit = (doc.get("git") or {}).get("commit")
    if commit != row.provenance.commit:
        problems.append(f"{path}: git.commit {commit!r} differs from the results file's {row.provenance.commit!r}")
    return problems


def tree_is_clean(row: GoldenRow, ctx: RuleContext) -> list[str]:
    if row.provenance.dirty:
        return ["the run's working tree was dirty (uncommitted changes); commit and re-run, or --allow dirty"]
    return []


def fuser_was_loaded(row: GoldenRow, ctx: RuleContext) -> list[str]:
    if row.setting in NO_FUSER:
        return []
    problems = []
    if not row.fuser.loaded:
        problems.append(f"{row.setting}: fuser.loaded is false: a C2C setting without a fuser is the receiver alone")
    if not row.fuser.sha256:
        problems.append(f"{row.setting}: fuser.sha256 is missing")
    return problems


def bytes_consistent(row: GoldenRow, ctx: RuleContext) -> list[str]:
    stats = row.metrics.bytes
    if row.setting in TEXT_ONLY:
        return [] if stats is None else [f"{row.setting}: a text-only baseline reports message bytes"]
    if stats is None:
        # c2c_fp16 rows from before its fp16 message was counted carry no bytes: a baseline line, not a point
        return (
            [f"{row.setting}: no measured message bytes for the compressed setting"]
            if row.setting == COMPRESSED
            else []
        )
    problems = []
    if row.setting == COMPRESSED and row.bytes_closed_form_drift != 0:
        problems.append(
            f"measured and closed-form bytes drift by {row.bytes_closed_form_drift} bytes in total; "
            "the byte count is not trustworthy"
        )
    parts = stats.breakdown
    total = parts.payload + parts.scales + parts.indices + parts.header
    if not math.isclose(total, stats.mean, rel_tol=1e-6, abs_tol=1e-6):
        problems.append(f"{row.setting}: bytes breakdown sums to {total:g}, mean is {stats.mean:g}")
    return problems


def oracle_marked(row: GoldenRow, ctx: RuleContext) -> list[str]:
    """A row whose selection reads the receiver's state must say so: its bytes assume an oracle sender."""
    method = row.selection_method
    needed = method is not None and method in SELECTORS.names() and is_oracle(method)
    if needed and not row.metrics.oracle:
        return [
            f"{row.setting}: selection.method {method!r} reads the receiver's state (an oracle a sender cannot "
            "compute) but the row is not marked oracle (metrics.oracle is false)"
        ]
    if row.metrics.oracle and not needed:
        return [f"{row.setting}: marked oracle, but selection.method {method!r} reads no receiver state"]
    return []


KEPT_HINT = "; the old row is kept (--replace to take the new one)"


def no_conflict_with_existing(row: GoldenRow, ctx: RuleContext) -> list[str]:
    old = ctx.existing.get(row.key)
    if old is None or old.numbers() == row.numbers():
        return []
    changed = differences(old.numbers(), row.numbers())
    shown = "; ".join(changed[:4]) + (f"; and {len(changed) - 4} more" if len(changed) > 4 else "")
    return [
        f"{row.setting}: conflicts with the golden row {row.key}: "
        f"old {_brief(old)} vs new {_brief(row)}, differing in {shown}{KEPT_HINT}"
    ]


def differences(old: Any, new: Any, path: str = "") -> list[str]:
    """'path: old -> new' for every leaf that differs: two rows that look alike in the brief (accuracy, n,
    bytes) may differ in a KL mean at the 7th digit, and the user has to see which number moved."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            sub = f"{path}.{key}" if path else str(key)
            old_value, new_value = old.get(key, ABSENT), new.get(key, ABSENT)
            out += differences(old_value, new_value, sub)
        return out
    return [] if old == new else [f"{path}: {_short(old)} -> {_short(new)}"]


ABSENT = object()


def _short(value: Any) -> str:
    if value is ABSENT:
        return "(absent)"
    if isinstance(value, float):
        return f"{value:.9g}"
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


def _brief(row: GoldenRow) -> str:
    m = row.metrics
    nbytes = f"{m.bytes.mean:g} B" if m.bytes else "no bytes"
    return f"[accuracy {m.accuracy:.4f}, n {m.n}, {nbytes}, from {row.run_dir}]"


RULES: dict[str, Rule] = {
    "row_has_full_n": row_has_full_n,
    "row_rates_recomputed": row_rates_recomputed,
    "row_has_no_errors": row_has_no_errors,
    "run_is_complete": run_is_complete,
    "row_has_provenance": row_has_provenance,
    "tree_is_clean": tree_is_clean,
    "fuser_was_loaded": fuser_was_loaded,
    "bytes_consistent": bytes_consistent,
    "oracle_marked": oracle_marked,
    "results_match_progress": results_match_progress,
    "no_conflict_with_existing": no_conflict_with_existing,
}

# Rules a human may waive for a deliberate exception (the row records it). A run that is not complete, has no
# provenance or loaded no fuser is never citable; a conflict is settled with --replace, not --allow.
ALLOW_ALIASES = {
    "dirty": "tree_is_clean",
    "errors": "row_has_no_errors",
    "partial": "row_has_full_n",
    "bytes": "bytes_consistent",
}
ALLOWABLE = tuple(ALLOW_ALIASES.values())


def resolve_allow(names: list[str]) -> tuple[list[str], list[str]]:
    """Map --allow values (rule names or aliases) to rule names; returns (rules, problems)."""
    rules, problems = set(), []
    for name in names:
        rule = ALLOW_ALIASES.get(name, name)
        if rule in ALLOWABLE:
            rules.add(rule)
        else:
            known = ", ".join(f"{alias} ({rule})" for alias, rule in ALLOW_ALIASES.items())
            problems.append(f"--allow {name}: cannot be waived (allowed: {known})")
    return sorted(rules), problems


def check_row(
    row: GoldenRow, ctx: RuleContext, allow: list[str], skip: tuple[str, ...] = ()
) -> tuple[list[str], GoldenRow]:
    """Run every rule; problems of allowed rules are waived and recorded in the returned row.

    Returns `(problems as "rule: why", row)`; the row carries `allowed`/`waived` for the rules actually waived.
    """
    problems, allowed, waived = [], set(row.allowed), list(row.waived)
    for name, rule in RULES.items():
        if name in skip:
            continue
        found = rule(row, ctx)
        if found and name in allow:
            allowed.add(name)
            waived += [f"{name}: {why}" for why in found if f"{name}: {why}" not in waived]
        else:
            problems += [f"{name}: {why}" for why in found]
    return problems, row.model_copy(update={"allowed": sorted(allowed), "waived": waived})
