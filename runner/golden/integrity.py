"""Content hashes that tie a golden row to what it came from: progress lines -> results file -> row.

A results file records the sha256 of the progress lines its numbers were computed from (`progress_sha256`);
a golden row copies it and adds the sha256 of the results file it was made from (`results_sha256`) and a seal
over its own content (`row_sha256`). A consistent hand edit of a row (counts changed with their interval, a
halved KL, bytes with a matching breakdown, a waiver) breaks the seal; against a run folder that is present,
`golden check` also re-derives the row from the results file and re-hashes both files. The seal is a
checksum, not a signature: it catches hand edits and accidents, not a forger who recomputes it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner.records import progress_sha256


def file_sha256(path: str | os.PathLike[str]) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def content_sha256(row: Any) -> str:
    """sha256 of the row's canonical JSON (sorted keys, no spaces), the seal itself left out."""
    data = json.loads(row.model_dump_json(by_alias=True, exclude={"row_sha256"}))
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def seal(row: Any) -> Any:
    return row.model_copy(update={"row_sha256": content_sha256(row)})


def seal_problems(row: Any) -> list[str]:
    """`field: why` for a row whose hashes are missing or whose content no longer matches its seal."""
    problems = []
    for name in ("results_sha256", "progress_sha256", "row_sha256"):
        if not getattr(row, name):
            problems.append(f"{name}: missing (rows are made by `golden merge`, which records it)")
    if row.row_sha256 and row.row_sha256 != content_sha256(row):
        problems.append(
            "row_sha256: the row's content does not match its seal: it was edited after the merge "
            "(merge the run again with --replace to take its numbers from the results file)"
        )
    return problems


def results_match_progress(row: Any, ctx: Any) -> list[str]:
    """The results file's numbers come from the progress lines in the run folder (checked when one is given)."""
    if ctx.run_dir is None:
        return []
    path = Path(ctx.run_dir) / "progress" / f"{row.dataset.name}.jsonl"
    if not row.progress_sha256:
        return ["the results file records no progress_sha256 (written before content hashes): run it again"]
    return mismatch(
        path,
        progress_sha256,
        row.progress_sha256,
        "the results file says",
        "the results or the progress lines were changed after the run",
    )


def mismatch(path: Path, hasher: Callable[[Path], str], recorded: str | None, says: str, why: str) -> list[str]:
    """[] when `path` is a file whose `hasher` digest is `recorded`; else one line saying what differs."""
    if not path.is_file():
        return [f"{path} is missing"]
    digest = hasher(path)
    return [] if digest == recorded else [f"{path} hashes to {digest[:12]}, {says} {str(recorded)[:12]}: {why}"]
