"""Build a top-K logit KD cache (qc2c.kd.format) shard by shard, resumable after a kill.

    meta = build_cache(folder, teacher, rows, settings, vocab_size=V, teacher_info={...})

Rows are processed in order, each shard in chunks of `batch_size` rows starting at the shard's first row, so
a row's teacher batch never depends on where a build stopped: a resumed build writes the same bytes as an
uninterrupted one. After each shard: the shard is written atomically, then the resume file
{n_written, next_shard, shards}; a kill between the two leaves a shard the resume file does not list,
which the next build deletes and rewrites. meta.json is written last.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from qc2c.kd import format as fmt
from qc2c.kd.teacher import CacheRow, row_targets


class KDCacheStopped(Exception):
    """A stop was requested; the rows up to `n_written` are on disk and a re-run continues from there."""

    def __init__(self, n_written: int) -> None:
        super().__init__(f"stopped after {n_written} rows (resume file written)")
        self.n_written = n_written


@dataclass(frozen=True)
class BuildSettings:
    """What fixes a cache's bytes (besides the teacher and the rows); kept in the resume file and meta.json."""

    name: str
    max_length: int
    top_k: int
    random_negatives: int = 0
    packing: bool = False
    shard_size: int = 256
    batch_size: int = 8
    seed: int = 0


def build_cache(
    folder: str | Path,
    teacher: Any,
    rows: Sequence[CacheRow],
    settings: BuildSettings,
    *,
    vocab_size: int,
    teacher_info: dict[str, Any],
    should_stop: Callable[[], bool] | None = None,
    on_rows: Callable[[int, int], None] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Build (or finish) the cache in `folder`; returns its meta. Raises KDCacheStopped after a shard when
    `should_stop()`; a complete cache is returned as it is."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / fmt.META).is_file():
        return fmt.read_meta(folder)
    if settings.top_k > vocab_size or settings.top_k + settings.random_negatives > vocab_size:
        raise ValueError(f"top_k {settings.top_k} + random_negatives {settings.random_negatives} > vocab {vocab_size}")
    state = fmt.read_resume(folder)
    if state["n_written"] and state.get("settings") != asdict(settings):
        raise fmt.CacheFormatError([f"{folder / fmt.RESUME}: settings: differ from this build's; delete the folder"])
    shards, n_written = list(state["shards"]), int(state["n_written"])
    fmt.drop_stale_shards(folder, len(shards))
    t0, s = time.monotonic(), settings
    for start in range(n_written, len(rows), s.shard_size):
        chunk = rows[start : start + s.shard_size]
        parts = []
        for b in range(0, len(chunk), s.batch_size):
            sub = chunk[b : b + s.batch_size]
            parts.append(
                row_targets(
                    sub,
                    teacher.logits(sub),
                    max_length=s.max_length,
                    top_k=s.top_k,
                    random_negatives=s.random_negatives,
                    first_row=start + b,
                    seed=s.seed,
                    packing=s.packing,
                )
            )
        tensors = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        shards.append(fmt.write_shard(folder, len(shards), tensors))
        n_written = start + len(chunk)
        fmt.write_resume(folder, n_written, shards, asdict(settings))
        if on_rows is not None:
            on_rows(n_written, len(rows))
        if progress:
            rate = (n_written - state["n_written"]) / max(time.monotonic() - t0, 1e-9)
            print(f"kd cache: {n_written}/{len(rows)} rows ({rate:.1f} rows/s)", file=sys.stderr)
        if should_stop is not None and should_stop() and n_written < len(rows):
            raise KDCacheStopped(n_written)
    meta = {
        "format": fmt.FORMAT,
        "version": fmt.VERSION,
        **asdict(settings),
        "vocab_size": vocab_size,
        "n_rows": n_written,
        "shards": shards,
        "fields": {n: fmt.DTYPE_NAMES[fmt.FIELDS[n][0]] for n in fmt.required_fields(s.random_negatives, s.packing)},
        "logits": "raw (not divided by a temperature)",
        "teacher": teacher_info,
        "content_sha256": fmt.content_sha256(shards),
    }
    fmt.write_meta(folder, meta)
    return meta
