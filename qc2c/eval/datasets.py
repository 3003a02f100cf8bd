"""Multiple-choice datasets as registered loaders: openbookqa, arc_challenge, mmlu_redux, mini.

Every set is read through the `datasets` library, from one of two places:

* local files: ``$QC2C_DATA_DIR/<name>/<split>*.{jsonl,json,parquet}`` (per subject for mmlu_redux:
  ``$QC2C_DATA_DIR/mmlu_redux/<subject>/<split>*...``) in the hub schema, for users with a copied dataset;
* the Hugging Face cache / hub (``HF_HUB_OFFLINE=1`` or ``HF_DATASETS_OFFLINE=1`` keep it cache-only).

A miss is a `DatasetUnavailable` naming the hub id, config and split and the prefetch command; there is no
silent fallback to another source. Where qc2c departs from C2C's evaluator (docs/c2c.md §5) the
choice is recorded in `MCDataset.notes`: ARC rows with numeric answer keys are kept (keys 1-4 → A-D; C2C drops
them) and rows with 3 or 5 options keep their labels. mmlu_redux follows C2C: rows whose ``error_type`` is
``no_correct_answer`` or ``expert`` are skipped and ``wrong_groundtruth`` rows are scored against
``correct_answer``.
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

from qc2c.plugins import Plugins

DATASETS: Plugins[MCSource] = Plugins("dataset")
LETTERS = "ABCDEFGHIJ"
FILE_EXTENSIONS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
MMLU_SUBJECTS = (
    "abstract_algebra anatomy astronomy business_ethics clinical_knowledge college_biology college_chemistry "
    "college_computer_science college_mathematics college_medicine college_physics computer_security "
    "conceptual_physics econometrics electrical_engineering elementary_mathematics formal_logic global_facts "
    "high_school_biology high_school_chemistry high_school_computer_science high_school_european_history "
    "high_school_geography high_school_government_and_politics high_school_macroeconomics high_school_mathematics "
    "high_school_microeconomics high_school_physics high_school_psychology high_school_statistics "
    "high_school_us_history high_school_world_history human_aging human_sexuality international_law jurisprudence "
    "logical_fallacies machine_learning management marketing medical_genetics miscellaneous moral_disputes "
    "moral_scenarios nutrition philosophy prehistory professional_accounting professional_law professional_medicine "
    "professional_psychology public_relations security_studies sociology us_foreign_policy virology world_religions"
).split()  # the 57 MMLU subjects, as C2C's DATASET_CONFIGS["mmlu-redux"]["subjects"]


class DatasetUnavailable(RuntimeError):
    """The data is neither in the local data dir nor in the HF cache (and the hub is out of reach)."""


class DatasetError(ValueError):
    """A row that does not fit the schema; the message names the file or hub row and the field."""


@dataclass(frozen=True)
class MCItem:
    id: str
    question: str
    choices: list[str]
    labels: list[str]
    answer: str  # one of labels
    subject: str | None = None


@dataclass(frozen=True)
class MCDataset:
    name: str
    split: str
    items: list[MCItem]
    fingerprint: str  # sha256 over the canonical JSON of `items` (after skipping rules and limit)
    n_total: int  # items in the split after skipping rules, before `limit`
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Row:
    where: str  # "path.jsonl:12" or "allenai/ai2_arc[ARC-Challenge] test row 11": the place errors name
    config: str | None
    index: int  # position within its config's split
    record: dict[str, Any]


class MCSource(ABC):
    """One dataset: where its rows live and how a row becomes an MCItem."""

    name: ClassVar[str]
    hub_id: ClassVar[str]
    hub_configs: ClassVar[tuple[str | None, ...]] = (None,)

    def rows(self, split: str) -> tuple[list[Row], str]:
        """All rows of `split` with a note saying where they came from."""
        local = _local_dir(self.name)
        if local is not None:
            rows = _local_rows(local, split, self.hub_configs)
            where = f"source: local files {local}"
            if len(self.hub_configs) > 1:
                where += f" ({len({r.config for r in rows})} of {len(self.hub_configs)} configs present)"
            return rows, where
        return hub_rows(self.name, self.hub_id, self.hub_configs, split), f"source: hub {self.hub_id} (HF cache)"

    @abstractmethod
    def convert(self, rows: list[Row]) -> tuple[list[MCItem], list[str]]:
        """Rows → items (skipping where the set's rules say so) and notes with the counts."""


# ---- members ----


@DATASETS.register("openbookqa")
class OpenBookQA(MCSource):
    hub_id = "allenai/openbookqa"
    hub_configs = ("main",)

    def convert(self, rows):
        return [_labelled_item(row, "question_stem") for row in rows], []


@DATASETS.register("arc_challenge")
class ArcChallenge(MCSource):
    hub_id = "allenai/ai2_arc"
    hub_configs = ("ARC-Challenge",)

    def convert(self, rows):
        items = [_labelled_item(row, "question", numeric_keys=True) for row in rows]
        n_numeric = sum(str(row.record["answerKey"]).strip().isdigit() for row in rows)
        n_odd = sum(len(item.choices) != 4 for item in items)
        notes = [
            f"numeric answer keys mapped 1-4 -> A-D in {n_numeric} of {len(rows)} rows (kept; C2C's evaluator drops them)",
            f"{n_odd} rows have 3 or 5 options (kept with their labels)",
        ]
        return items, notes


@DATASETS.register("mmlu_redux")
class MMLURedux(MCSource):
    hub_id = "edinburgh-dawg/mmlu-redux-2.0"
    hub_configs = tuple(MMLU_SUBJECTS)
    skipped_error_types: ClassVar[tuple[str, ...]] = ("no_correct_answer", "expert")

    def convert(self, rows):
        items, skipped, relabelled, unusable = [], {t: 0 for t in self.skipped_error_types}, 0, 0
        for row in rows:
            rec = row.record
            error_type = rec.get("error_type") or "ok"
            if error_type in skipped:
                skipped[error_type] += 1
                continue
            choices = [str(c) for c in _field(row, "choices")]
            answer = _int_field(row, "answer")
            if error_type == "wrong_groundtruth" and rec.get("correct_answer") is not None:
                corrected = _answer_index(str(rec["correct_answer"]).strip(), len(choices))
                if corrected is None:
                    unusable += 1
                    continue
                answer, relabelled = corrected, relabelled + 1
            labels = list(LETTERS[: len(choices)])
            if not 0 <= answer < len(choices):
                raise DatasetError(f"{row.where}: answer: {answer} is out of range for {len(choices)} choices")
            qid = f"{row.config}/{row.index}"
            items.append(MCItem(qid, str(_field(row, "question")), choices, labels, labels[answer], row.config))
        notes = [f"skipped {n} rows with error_type {t}" for t, n in skipped.items()]
        notes.append(f"{relabelled} wrong_groundtruth rows scored against correct_answer")
        if unusable:
            notes.append(f"skipped {unusable} wrong_groundtruth rows whose correct_answer is not a choice")
        return items, notes


@DATASETS.register("mini")
class Mini(MCSource):
    """The bundled 70-question science set (qc2c/eval/data/mini_mc.jsonl, ARC schema, one split: test)."""

    hub_id = "qc2c/mini (bundled)"

    def rows(self, split):
        path = Path(str(resources.files("qc2c.eval") / "data" / "mini_mc.jsonl"))
        if split != "test":
            raise DatasetUnavailable(f"dataset 'mini' has only the split 'test' (asked for {split!r})")
        return _file_rows(path, None), f"source: bundled {path.name}"

    def convert(self, rows):
        return [_labelled_item(row, "question") for row in rows], []


@DATASETS.register("demo")
class Demo(MCSource):
    """The demo world's questions (qc2c/demo): subject `shared` (facts both models know) or `sharer_only`
    (facts only the sharer knows, never shown to the fuser). Splits: test (reported) and validation (for
    choosing training settings; never reported). Read from the demo zoo in use."""

    hub_id = "qc2c/demo (bundled)"

    def rows(self, split):
        from qc2c.demo.zoo import dataset_file

        path = dataset_file(split)
        if not path.is_file():
            raise DatasetUnavailable(
                f"dataset 'demo': {path} does not exist (split {split!r}; the demo has 'test', 'validation')"
            )
        return _file_rows(path, None), f"source: demo zoo {path}"

    def convert(self, rows):
        items = []
        for row in rows:
            item = _labelled_item(row, "question")
            items.append(MCItem(item.id, item.question, item.choices, item.labels, item.answer, _field(row, "subject")))
        return items, []


# ---- loading ----


def load_mc(name: str, *, split: str = "test", limit: int | tuple[int, int] | list[int] | None = None) -> MCDataset:
    """Load dataset `name` (a DATASETS name) and apply `limit`: None (all), N (first N) or (start, end)."""
    source = DATASETS.get(name)()
    rows, where = source.rows(split)
    items, notes = source.convert(rows)
    start, end = _limit_bounds(limit, len(items))
    if end > len(items):
        notes.append(f"limit {limit} reaches past the {len(items)} items; used {max(0, len(items) - start)}")
    chosen = items[start:end]
    return MCDataset(name, split, chosen, fingerprint(chosen), len(items), [where, *notes])


def fingerprint(items: Iterable[MCItem]) -> str:
    canonical = json.dumps([asdict(i) for i in items], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _limit_bounds(limit, n: int) -> tuple[int, int]:
    if limit is None:
        return 0, n
    if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1:
        return 0, limit
    if isinstance(limit, list | tuple) and len(limit) == 2 and all(type(v) is int for v in limit):
        if 0 <= limit[0] < limit[1]:
            return limit[0], limit[1]
    raise ValueError(
        f"limit: {limit!r} is not allowed (allowed: null, a positive int N, or [start, end) with 0 <= start < end)"
    )


def _local_dir(name: str) -> Path | None:
    root = os.environ.get("QC2C_DATA_DIR")
    return Path(root) / name if root and (Path(root) / name).is_dir() else None


def _local_rows(folder: Path, split: str, configs: tuple[str | None, ...]) -> list[Row]:
    """Per-config subfolders when the set has several configs, otherwise the folder itself."""
    rows: list[Row] = []
    multi = len(configs) > 1
    for config in configs:
        sub = folder / config if multi else folder
        if multi and not sub.is_dir():
            continue
        files = sorted(p for p in sub.glob(f"{split}*") if p.suffix in FILE_EXTENSIONS)
        if not files:
            raise DatasetUnavailable(
                f"{sub}: no files for split {split!r} (expected {split}*.jsonl, {split}*.json or {split}*.parquet)"
            )
        offset = 0
        for path in files:
            file_rows = _file_rows(path, config if multi else None, offset)
            rows += file_rows
            offset += len(file_rows)
    if multi and not rows:
        raise DatasetUnavailable(f"{folder}: no subject folders (expected e.g. {folder / configs[0]}/{split}.jsonl)")
    return rows


@contextmanager
def _quiet_progress():
    """`datasets` draws a progress bar per file it converts; restore the caller's setting afterwards."""
    import datasets  # deferred: importing `datasets` costs about a second

    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield datasets
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def _file_rows(path: Path, config: str | None, offset: int = 0) -> list[Row]:
    with _quiet_progress() as datasets:
        table = datasets.load_dataset(FILE_EXTENSIONS[path.suffix], data_files=str(path), split="train")
    sep = ":" if path.suffix == ".jsonl" else " row "
    return [Row(f"{path}{sep}{i + 1}", config, offset + i, dict(rec)) for i, rec in enumerate(table)]


def hub_rows(name: str, hub_id: str, configs: tuple[str | None, ...], split: str) -> list[Row]:
    """Rows of every config from the HF cache, downloading when the hub is reachable (used by qc2c.prefetch)."""
    rows: list[Row] = []
    for config in configs:
        try:
            with _quiet_progress() as datasets:
                table = datasets.load_dataset(hub_id, config, split=split)
        except OSError as err:  # ConnectionError, FileNotFoundError and the hub's cache-miss errors
            raise DatasetUnavailable(_unavailable_message(name, hub_id, config, split, err)) from err
        label = f"{hub_id}[{config}]" if config else hub_id
        rows += [Row(f"{label} {split} row {i}", config, i, dict(rec)) for i, rec in enumerate(table)]
    return rows


def _unavailable_message(name: str, hub_id: str, config: str | None, split: str, err: Exception) -> str:
    offline = any(
        os.environ.get(v, "").lower() in {"1", "true", "yes", "on"} for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )
    why = "offline mode is on (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE)" if offline else "the hub could not be reached"
    return (
        f"dataset {name!r} ({hub_id}, config {config}, split {split}) is not in the Hugging Face cache and {why} "
        f"[{type(err).__name__}: {str(err)[:200]}]; on a machine with hub access run "
        f"`python -m qc2c.prefetch datasets {name}` and copy the HF cache here, "
        f"or put the files under $QC2C_DATA_DIR/{name}/"
    )


# ---- row conversion ----


def _field(row: Row, key: str) -> Any:
    if key not in row.record or row.record[key] is None:
        raise DatasetError(f"{row.where}: {key}: missing")
    return row.record[key]


def _int_field(row: Row, key: str) -> int:
    value = _field(row, key)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DatasetError(f"{row.where}: {key}: expected an integer, got {value!r}") from None


def _labelled_item(row: Row, question_key: str, *, numeric_keys: bool = False) -> MCItem:
    """ARC/OpenBookQA schema: choices {text: [...], label: [...]}, answerKey a label."""
    choices = _field(row, "choices")
    texts, labels = [str(t) for t in choices.get("text") or []], [str(x) for x in choices.get("label") or []]
    answer = str(_field(row, "answerKey")).strip()
    if numeric_keys:  # ARC: about 1% of rows use 1-4 (some 1-5) instead of A-D
        labels = [LETTERS[int(x) - 1] if x.isdigit() and 1 <= int(x) <= len(LETTERS) else x for x in labels]
        answer = LETTERS[int(answer) - 1] if answer.isdigit() and 1 <= int(answer) <= len(LETTERS) else answer
    if not texts or len(texts) != len(labels):
        raise DatasetError(f"{row.where}: choices: {len(texts)} texts for {len(labels)} labels")
    if answer not in labels:
        raise DatasetError(f"{row.where}: answerKey: {answer!r} is not one of the labels {', '.join(labels)}")
    return MCItem(str(_field(row, "id")), str(_field(row, question_key)), texts, labels, answer)


def _answer_index(value: str, n_choices: int) -> int | None:
    """mmlu-redux `correct_answer` is a digit 0-3 or a letter A-D (C2C's parse_answer accepts both)."""
    if value.isdigit() and int(value) < n_choices:
        return int(value)
    if len(value) == 1 and value in LETTERS[:n_choices]:
        return LETTERS.index(value)
    return None
