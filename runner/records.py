"""progress/<dataset>.jsonl: one line per scored sample, appended and fsync'd per batch — the resume point.

A line is a JSON object {"id", "gold", "settings": {setting: {...}}, "error": str|None, "n_batch"}. A kill
can tear only the last line (appends are whole batches, fsync'd): reading ignores a torn last line, and
`ProgressLog.open` truncates it away before the next append, so it cannot become a corrupt middle line.
A sample id appears at most once; a duplicate or a corrupt middle line is an error that names the line.
"""

from __future__ import annotations

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
            with open(self.path, "r+b") as handle:
                handle.truncate(progress.valid_nbytes)
                handle.flush()
                os.fsync(handle.fileno())
            progress.torn_tail = False
        return progress

    def append(self, records: list[dict[str, Any]]) -> None:
        """Append one batch (one write + fsync: the batch is either all there or torn at its end)."""
        if records:
            fsio.append_line_fsync(self.path, [json.dumps(r, sort_keys=True, allow_nan=False) for r in records])
