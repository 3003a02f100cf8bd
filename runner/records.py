"""progress/<dataset>.jsonl: one line per scored sample, appended and fsync'd per batch — the resume point.

A line is a JSON object {"id", "gold", "settings": {setting: {...}}, "error": str|None}. A kill
can tear only the last line (appends are whole batches, fsync'd): reading ignores a torn last line, and
`ProgressLog.open` truncates it away before the next append, so it cannot become a corrupt middle line.
A sample id appears at most once; a duplicate or a corrupt middle line is an error that names the line.

progress/<dataset>.batches.json is the batch plan: which samples are scored together, fixed before the first
line is written. A sample's numbers may depend on its batch in the last float bits (batched kernels sum in
another order), so a resume forms exactly the batches the uninterrupted run formed: it keeps the leading
records that make whole planned batches and cuts off a partly written batch, which is then scored again whole.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner import fsio


class ProgressError(ValueError):
    """The progress file is corrupt (message: `file:line: what`)."""


@dataclass
class Progress:
    """What a progress file holds: records in file order, the ids done, and how many bytes are valid."""

    records: list[dict[str, Any]] = field(default_factory=list)
    valid_nbytes: int = 0
    torn_tail: bool = False
    ends: list[int] = field(default_factory=list)  # byte offset just after each record's line

    @property
    def done_ids(self) -> set[str]:
        return {r["id"] for r in self.records}

    @property
    def n_errors(self) -> int:
        return sum(1 for r in self.records if r.get("error"))


def read_progress(path: str | os.PathLike[str]) -> Progress:
    """Parse `path` (missing file = empty); a torn last line is reported by `torn_tail`, not raised."""
    path = Path(path)
    progress = Progress()
    if not path.exists():
        return progress
    raw = path.read_bytes()
    seen: set[str] = set()
    offset = 0
    lines = raw.split(b"\n")
    for lineno, line in enumerate(lines, start=1):
        is_last = lineno == len(lines)
        if is_last:  # text after the final newline: empty, or a line the kill tore
            progress.torn_tail = bool(line.strip())
            break
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or "id" not in record:
                raise ValueError("not a record with an 'id'")
        except ValueError as exc:
            raise ProgressError(f"{path}:{lineno}: corrupt progress line ({exc})") from None
        if record["id"] in seen:
            raise ProgressError(f"{path}:{lineno}: sample {record['id']!r} recorded twice")
        seen.add(record["id"])
        progress.records.append(record)
        offset += len(line) + 1
        progress.ends.append(offset)
    progress.valid_nbytes = offset
    return progress


class ProgressLog:
    """Appends batches of records to one progress file, durably."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def open(self) -> Progress:
        """Read what is there and cut a torn tail off, so that appends start on a line boundary."""
        progress = read_progress(self.path)
        if progress.torn_tail:
            self._truncate(progress.valid_nbytes)
            progress.torn_tail = False
        return progress

    def keep(self, progress: Progress, n_records: int) -> Progress:
        """Cut the file after its first `n_records` records (a partly written batch goes, to be re-scored)."""
        if n_records < len(progress.records):
            size = progress.ends[n_records - 1] if n_records else 0
            self._truncate(size)
            progress = Progress(progress.records[:n_records], size, False, progress.ends[:n_records])
        return progress

    def _truncate(self, size: int) -> None:
        with open(self.path, "r+b") as handle:
            handle.truncate(size)
            handle.flush()
            os.fsync(handle.fileno())

    def append(self, records: list[dict[str, Any]]) -> None:
        """Append one batch (one write + fsync: the batch is either all there or torn at its end)."""
        if records:
            fsio.append_line_fsync(self.path, [json.dumps(r, sort_keys=True, allow_nan=False) for r in records])


def progress_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a progress file's complete lines (a torn tail excluded): what its results file was made from."""
    data = Path(path).read_bytes()
    return hashlib.sha256(data[: data.rfind(b"\n") + 1]).hexdigest()


PLAN_SCHEMA = 1


@dataclass(frozen=True)
class BatchPlan:
    """The batches of one dataset, in scoring order (sample ids), for `batch_size`."""

    batch_size: int
    batches: list[list[str]]

    def whole_batches(self, records: list[dict[str, Any]]) -> tuple[int, int]:
        """(batches, records): how many leading records make whole planned batches, in plan order."""
        n_records = 0
        for k, batch in enumerate(self.batches):
            got = {r["id"] for r in records[n_records : n_records + len(batch)]}
            if got != set(batch):
                return k, n_records
            n_records += len(batch)
        return len(self.batches), n_records


def batch_plan(path: str | os.PathLike[str], ordered_ids: list[str], batch_size: int) -> BatchPlan:
    """The stored plan at `path`, checked against the dataset's ids and batch size; else a new one (consecutive
    batches of `ordered_ids`), written before any sample is scored. Raises ProgressError (`file: field: why`)."""
    path = Path(path)
    if not path.exists():
        plan = BatchPlan(batch_size, [ordered_ids[i : i + batch_size] for i in range(0, len(ordered_ids), batch_size)])
        fsio.atomic_write_json(path, {"schema": PLAN_SCHEMA, "batch_size": batch_size, "batches": plan.batches})
        return plan
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ProgressError(f"{path}: unreadable batch plan ({exc})") from None
    if not isinstance(data, dict) or data.get("schema") != PLAN_SCHEMA:
        raise ProgressError(f"{path}: schema: not a batch plan of schema {PLAN_SCHEMA}")
    if data.get("batch_size") != batch_size:
        raise ProgressError(f"{path}: batch_size: {data.get('batch_size')!r}, but the manifest says {batch_size}")
    batches = data.get("batches")
    if not isinstance(batches, list) or not all(
        isinstance(b, list) and 0 < len(b) <= batch_size and all(isinstance(i, str) for i in b) for b in batches
    ):
        raise ProgressError(f"{path}: batches: not a list of batches of 1..{batch_size} sample ids")
    planned = [i for b in batches for i in b]
    if len(planned) != len(set(planned)) or set(planned) != set(ordered_ids):
        raise ProgressError(
            f"{path}: batches: the planned sample ids are not the dataset's ({len(planned)} planned, "
            f"{len(ordered_ids)} in the dataset)"
        )
    return BatchPlan(batch_size, batches)
