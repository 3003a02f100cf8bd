"""Validated merge of run folders into golden/golden_runs.json.

All or nothing: every results file of every run folder is turned into rows and checked by every rule
(runner.golden.validate); if any problem is left after --allow waivers, nothing is written and every problem
is returned. Each row is sealed with its content hashes (runner.golden.integrity); a merge refuses a store
whose existing rows no longer match their seals, so a hand edit is never carried forward under a new seal. The read-modify-write happens under `fsio.locked(golden_runs.json)` with an atomic replace, so
concurrent merges lose nothing, and rows are serialized with sorted keys, so merging the same run twice
leaves the file byte-identical.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from qc2c.errors import ProblemsError
from runner import fsio
from runner.golden.integrity import file_sha256, mismatch, seal, seal_problems
from runner.golden.validate import (
    ALLOWABLE,
    GOLDEN_SCHEMA,
    KEPT_HINT,
    GoldenFile,
    GoldenRow,
    RuleContext,
    check_row,
    differences,
    resolve_allow,
    setting_family,
)
from runner.results import (
    DatasetResult,
    NonStandardJSON,
    ResultsError,
    format_validation_error,
    load_result,
    strict_json,
)

GOLDEN_JSON = "golden_runs.json"
SUMMARY_MD = "golden_summary.md"


@dataclass
class MergeReport:
    """What a merge did (or, with problems, why it wrote nothing)."""

    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "RUN_DIR/results/x.json: rule: why"
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class GoldenFileError(ProblemsError):
    """golden.json is unreadable or invalid; `.problems` lists why."""


def load_golden(path: Path) -> GoldenFile:
    """Read golden_runs.json (an absent file is an empty store); raises GoldenFileError naming line/field."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return GoldenFile.model_validate({"schema": GOLDEN_SCHEMA, "rows": {}})
    except (OSError, UnicodeDecodeError) as exc:
        raise GoldenFileError([f"{path}: unreadable: {exc}"]) from None
    try:
        data = strict_json(text, object_pairs_hook=_refuse_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise GoldenFileError([f"{path}:{exc.lineno}: json: {exc.msg}"]) from None
    except NonStandardJSON as exc:
        raise GoldenFileError([f"{path}:{exc}"]) from None
    except DuplicateKey as exc:
        raise GoldenFileError(
            [f"{path}: json: key {exc} appears twice (a hand merge?); one row would be lost"]
        ) from None
    if isinstance(data, dict) and data.get("schema") == 1:
        hint = "move it aside and merge the runs again (python -m runner golden merge --all)"
        raise GoldenFileError([f"{path}: schema: 1 is a store from before content hashes; {hint}"])
    try:
        golden = GoldenFile.model_validate(data)
    except ValidationError as exc:
        raise GoldenFileError(format_validation_error(str(path), exc)) from None
    wrong = [
        f"{path}: rows.{key}: key does not match the row ({row.key})"
        for key, row in golden.rows.items()
        if key != row.key
    ]
    if wrong:
        raise GoldenFileError(wrong)
    return golden


class DuplicateKey(ValueError):
    pass


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json.loads keeps the last of two equal keys silently; in the store that would drop a row."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise DuplicateKey(key)
        seen[key] = value
    return seen


def dump_golden(golden: GoldenFile) -> str:
    return json.dumps(golden.dump(), indent=2, sort_keys=True) + "\n"


def rows_from_result(result: DatasetResult, run_dir: str, results_sha256: str | None = None) -> list[GoldenRow]:
    """One row per setting of a results file (unsealed); baselines carry no precision view (they send fp16 or
    nothing). `results_sha256`: the hash of the file `result` was read from."""
    shared: dict[str, Any] = {
        "run_key": result.run_key,
        "manifest": result.manifest,
        "milestone": result.milestone,
        "protocol": result.protocol,
        "pair": result.pair,
        "fuser": result.fuser,
        "kv": result.kv,
        "dataset": result.dataset,
        "bytes_closed_form_drift": result.bytes_closed_form_drift,
        "provenance": result.provenance,
        "run_dir": run_dir,
        "progress_sha256": result.progress_sha256,
        "results_sha256": results_sha256,
    }
    return [
        GoldenRow(
            **shared,
            setting=setting,
            family=setting_family(setting, result.kv),
            metrics=metrics,
            precision=result.precision if setting == "compressed" else None,
        )
        for setting, metrics in sorted(result.settings.items())
    ]


def display_run_dir(run_dir: Path, golden_dir: Path) -> str:
    """Relative to the repository (golden_dir's parent) when inside it: the same run reads the same anywhere."""
    resolved, root = run_dir.resolve(), golden_dir.resolve().parent
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(resolved)


def read_registry(path: Path) -> tuple[dict[str, Any] | None, list[str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, [f"{path}: run registry not found (is --runs-dir right?)"]
    except (OSError, ValueError) as exc:
        return None, [f"{path}: unreadable run registry: {exc}"]
    if not isinstance(data, dict):
        return None, [f"{path}: run registry is not a JSON object"]
    return data, []


def _registry_path(run_dir: Path, runs_dir: Path | None) -> Path:
    # runs/<milestone>/<run_tag>/ -> runs/registry.json unless --runs-dir says otherwise
    return (runs_dir if runs_dir is not None else run_dir.resolve().parents[1]) / "registry.json"


def collect_rows(
    run_dirs: Iterable[Path], golden_dir: Path, allow: list[str], existing: dict[str, GoldenRow], runs_dir: Path | None
) -> tuple[list[GoldenRow], list[str]]:
    """Rows of every results file, checked; returns (rows, problems) with problems as `file: rule: why`."""
    rows: list[GoldenRow] = []
    problems: list[str] = []
    seen: dict[str, GoldenRow] = dict(existing)
    for run_dir in run_dirs:
        files = sorted((run_dir / "results").glob("*.json"))
        if not files:
            problems.append(f"{run_dir}: no results/*.json (has the run finished?)")
            continue
        reg_path = _registry_path(run_dir, runs_dir)
        registry, reg_problems = read_registry(reg_path)
        problems += [f"{run_dir}: run_is_complete: {p}" for p in reg_problems]
        for path in files:
            try:
                result = load_result(path)
            except ResultsError as exc:
                problems += [_as_schema_problem(p, path) for p in exc.problems]
                continue
            for row in rows_from_result(result, display_run_dir(run_dir, golden_dir), file_sha256(path)):
                ctx = RuleContext(registry=registry or {}, registry_path=reg_path, run_dir=run_dir, existing=seen)
                skip = ("run_is_complete",) if registry is None else ()
                found, row = check_row(row, ctx, allow, skip=skip)
                problems += [f"{path}: {p}" for p in found if f"{path}: {p}" not in problems]
                row = seal(row)
                rows.append(row)
                seen.setdefault(row.key, row)
    return rows, problems


def merge_runs(
    run_dirs: Iterable[str | os.PathLike[str]],
    golden_dir: str | os.PathLike[str],
    allow: list[str] | None = None,
    replace: bool = False,
    *,
    runs_dir: str | os.PathLike[str] | None = None,
    plots: bool = False,
) -> MergeReport:
    """Validate and merge `run_dirs` into `golden_dir`/golden_runs.json, then regenerate the summary (+ plots).

    Args:
        run_dirs: run folders (`runs/<milestone>/<run_tag>/`), each with results/*.json and provenance.json.
        golden_dir: folder of golden_runs.json, golden_summary.md and plots/.
        allow: rules (or aliases: dirty, errors, partial, bytes) to waive; the row records what was waived.
        replace: a row that conflicts with an existing one replaces it (otherwise the merge is refused).
        runs_dir: folder of registry.json; default: two levels above each run folder.
        plots: also regenerate golden/plots/*.png.
    """
    golden_dir = Path(golden_dir)
    report = MergeReport()
    allow_rules, allow_problems = resolve_allow(list(allow or []))
    if allow_problems:
        report.problems = allow_problems
        return report
    path = golden_dir / GOLDEN_JSON
    with fsio.locked(path):
        try:
            golden = load_golden(path)
        except GoldenFileError as exc:
            report.problems = exc.problems
            return report
        broken = [f"{path}: {key}: {p}" for key, row in golden.rows.items() for p in seal_problems(row)]
        if broken:
            report.problems = broken + [f"{path}: fix or remove those rows first (golden check lists every problem)"]
            return report
        rows, problems = collect_rows(
            [Path(d) for d in run_dirs],
            golden_dir,
            allow_rules,
            dict(golden.rows),
            Path(runs_dir) if runs_dir else None,
        )
        if replace:
            kept = []
            for line in problems:
                if ": no_conflict_with_existing: " in line:
                    report.notes.append(line.replace(KEPT_HINT, "; the new row replaces it"))
                else:
                    kept.append(line)
            problems = kept
        if problems:
            report.problems = problems
            return report
        merged = dict(golden.rows)
        for row in rows:
            old = merged.get(row.key)
            if old is None:
                report.added.append(row.key)
            elif old.numbers() == row.numbers():
                report.unchanged.append(row.key)
                continue
            else:
                report.replaced.append(row.key)
            merged[row.key] = row
        new = golden.model_copy(update={"rows": dict(sorted(merged.items()))})
        text = dump_golden(new)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            fsio.atomic_write(path, text)
        write_outputs(new, golden_dir, plots=plots)
    return report


def write_outputs(golden: GoldenFile, golden_dir: Path, *, plots: bool) -> None:
    """Regenerate the summary (and plots) from the store; called under the golden lock."""
    from runner.golden.summary import render_summary

    text = render_summary(golden)
    summary = golden_dir / SUMMARY_MD
    if not summary.exists() or summary.read_text(encoding="utf-8") != text:
        fsio.atomic_write(summary, text)
    if plots:
        from runner.golden.plots import write_plots

        write_plots(golden, golden_dir / "plots")


def discover_complete_runs(runs_dir: Path) -> tuple[list[Path], list[str]]:
    """Run folders under runs/<milestone>/<run_tag>/ whose registry status is complete; notes for the others."""
    registry, problems = read_registry(runs_dir / "registry.json")
    if registry is None:
        return [], problems
    found, notes = [], []
    for results in sorted(runs_dir.glob("*/*/results")):
        run_dir = results.parent
        keys = {_peek_run_key(p) for p in results.glob("*.json")} - {None}
        status = {(registry.get(k) or {}).get("status") for k in keys}
        if status == {"complete"}:
            found.append(run_dir)
        else:
            notes.append(f"{run_dir}: skipped (registry status {sorted(map(str, status)) or 'unknown'})")
    return found, notes


def _as_schema_problem(line: str, path: Path) -> str:
    """`file: field: why` from the results loader -> `file: schema: field: why` (the rule column)."""
    head = f"{path}: "
    return f"{head}schema: {line[len(head) :]}" if line.startswith(head) else line


def _peek_run_key(path: Path) -> str | None:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("run_key")
    except (OSError, ValueError, AttributeError):
        return None


def check_golden(golden_dir: str | os.PathLike[str], unverified: list[str] | None = None) -> list[str]:
    """Validate the whole store: JSON, schema, keys, seals, waivers and every rule; problems are `file: key: rule: why`.

    A row whose run folder is present is re-verified against it: the results file's hash, the row re-derived
    from that file, the progress lines' hash and provenance.json. A row whose run folder is absent gets every
    other check and a line in `unverified` (`key: run folder ... is not present`). The registry is read at merge.
    """
    golden_dir = Path(golden_dir)
    path = golden_dir / GOLDEN_JSON
    if not path.exists():
        return [f"{path}: not found"]
    try:
        golden = load_golden(path)
    except GoldenFileError as exc:
        return exc.problems
    problems = []
    for key, row in golden.rows.items():
        run_dir = Path(row.run_dir) if Path(row.run_dir).is_absolute() else golden_dir.resolve().parent / row.run_dir
        present = run_dir.is_dir()
        found, _ = check_row(row, RuleContext(run_dir=run_dir if present else None), [])
        waived = [p for p in found if p.split(": ", 1)[0] in row.allowed]
        found = [p for p in found if p not in waived] + seal_problems(row) + _waiver_problems(row, waived)
        if present:
            found += _folder_problems(row, run_dir)
        elif unverified is not None:
            unverified.append(f"{key}: run folder {row.run_dir} is not present")
        problems += [f"{path}: {key}: {p}" for p in found]
    return problems


def _waiver_problems(row: GoldenRow, found: list[str]) -> list[str]:
    """A row's waivers must be ones merge can grant, recording exactly what the waived rules find now."""
    problems = [f"allowed: {name} can never be waived" for name in row.allowed if name not in ALLOWABLE]
    if sorted(found) != sorted(row.waived):
        problems.append(
            f"allowed: the row records waived problems {row.waived} but its waived rules find {found} "
            "(a waiver added or edited by hand?)"
        )
    return problems


def _folder_problems(row: GoldenRow, run_dir: Path) -> list[str]:
    """The row is what its results file (unchanged since the merge) says."""
    results = run_dir / "results" / f"{row.dataset.name}.json"
    found = mismatch(
        results, file_sha256, row.results_sha256, "the row says", "the file or the row changed after the merge"
    )
    if found:
        return [f"results_sha256: {p}" for p in found]
    digest = str(row.results_sha256)  # the file hashes to it (checked above)
    try:
        result = load_result(results)
    except ResultsError as exc:
        return [f"results_sha256: {p}" for p in exc.problems]
    twin = next((r for r in rows_from_result(result, row.run_dir, digest) if r.setting == row.setting), None)
    if twin is None:
        return [f"results_sha256: {results} has no setting {row.setting!r}"]
    skip = {"allowed", "waived", "row_sha256"}
    changed = differences(twin.dump(skip), row.dump(skip))
    if changed:
        shown = "; ".join(changed[:4]) + (f"; and {len(changed) - 4} more" if len(changed) > 4 else "")
        return [f"results_sha256: the row differs from {results} (file -> row): {shown}"]
    return []
