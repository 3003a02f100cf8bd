"""The batch loop of a run: for each dataset, score the planned batches not yet in progress/<dataset>.jsonl
with every setting, append the batch's records (fsync'd), update status.json, and check the stop flag and the
error budget between batches. All settings of a batch are scored from one receiver and one sharer prefill
where they can be (`qc2c.eval.shared`). The batches are the stored plan (runner.records.batch_plan), so a resumed run
scores every sample in the batch the uninterrupted run scored it in.

One progress line per sample: {"id", "gold", "subject", "settings": {setting: RowScore.to_json}, "error"}.
`error` is None, or "setting: Type: message (at file:line)" for every setting that raised on the sample.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from qc2c.eval.batching import by_length
from qc2c.eval.datasets import MCDataset, MCItem, load_mc
from qc2c.eval.score import RowScore
from qc2c.eval.shared import score_settings
from runner import fsio
from runner.lifecycle import RunFailed, StopFlag
from runner.plan import Plan
from runner.progress_ui import ProgressUI
from runner.provenance import redact, secret_values
from runner.records import Progress, ProgressError, ProgressLog, batch_plan
from runner.registry import Registry
from runner.schema import Manifest
from runner.session import Session
from runner.status import StatusFile


def progress_log(plan: Plan, dataset: str) -> ProgressLog:
    """progress/<dataset>.jsonl of the run folder: one line per scored sample."""
    return ProgressLog(plan.run_dir / "progress" / f"{dataset}.jsonl")


def sample_record(item: MCItem, rows: dict[str, RowScore], secrets: list[str]) -> dict[str, Any]:
    settings = {name: row.to_json(item.answer) for name, row in rows.items()}
    errors = [f"{name}: {row.error}" for name, row in rows.items() if row.error]
    record = {
        "id": item.id,
        "gold": item.answer,
        "subject": item.subject,
        "settings": settings,
        "error": "; ".join(errors) or None,
    }
    return redact(record, secrets)


def load_datasets(manifest: Manifest) -> dict[str, MCDataset]:
    ev = manifest.eval
    return {name: load_mc(name, split=ev.split, limit=ev.limit) for name in ev.datasets}


def dataset_info(ds: MCDataset, manifest: Manifest) -> dict[str, Any]:
    limit = manifest.eval.limit
    return {
        "split": manifest.eval.split,
        "fingerprint": ds.fingerprint,
        "n_total": ds.n_total,
        "limit": list(limit) if isinstance(limit, tuple) else limit,
        "n_declared": len(ds.items) if limit is not None else None,
        "notes": list(ds.notes),
    }


def check_items(name: str, ds: MCDataset, run_dir: Path) -> None:
    """Refuse duplicate sample ids (resume keys on them) and a dataset that changed under a partial run.

    The fingerprint of the items is pinned in progress/<dataset>.fingerprint when scoring starts; a resume
    with different items (an updated HF cache, edited local files) would mix two datasets in one result.
    """
    ids = [item.id for item in ds.items]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise RunFailed(f"dataset {name}: duplicate sample ids {dupes}; ids must be unique to resume safely")
    pin = run_dir / "progress" / f"{name}.fingerprint"
    if pin.exists():
        pinned = pin.read_text().strip()
        if pinned != ds.fingerprint:
            raise RunFailed(
                f"dataset {name}: items changed since this run started (fingerprint {pinned[:12]} -> "
                f"{ds.fingerprint[:12]}); invalidate the run (python -m runner registry invalidate ...) to start over"
            )
    else:
        fsio.atomic_write(pin, ds.fingerprint + "\n")


def resume_batches(
    name: str, ds: MCDataset, progress_log: ProgressLog, batch_size: int, log: logging.Logger
) -> tuple[list[list[MCItem]], Progress]:
    """The planned batches not yet written whole, and the progress kept: a partly written batch (a kill between
    its lines, or records from another batching) is cut from the file and scored again whole."""
    by_id = {item.id: item for item in ds.items}
    ordered = [item.id for item in by_length(ds.items)]
    try:
        plan = batch_plan(progress_log.path.with_name(f"{name}.batches.json"), ordered, batch_size)
        progress = progress_log.open()
    except ProgressError as exc:
        raise RunFailed(str(exc)) from None
    n_batches, n_keep = plan.whole_batches(progress.records)
    if n_keep < len(progress.records):
        log.warning(
            "%s: %d record(s) after the last whole planned batch are dropped and re-scored in their planned batches",
            name,
            len(progress.records) - n_keep,
        )
        progress = progress_log.keep(progress, n_keep)
    return [[by_id[i] for i in batch] for batch in plan.batches[n_batches:]], progress


def open_dataset(
    plan: Plan, name: str, ds: MCDataset, status: StatusFile, log: logging.Logger
) -> tuple[ProgressLog, list[list[MCItem]], Progress]:
    """A run's view of one dataset before scoring: items checked (and pinned), its progress file, the planned
    batches still to score, and status.json's counts set from what is on disk."""
    check_items(name, ds, plan.run_dir)
    progress_file = progress_log(plan, name)
    todo, progress = resume_batches(name, ds, progress_file, plan.manifest.eval.batch_size, log)
    n_todo = sum(len(batch) for batch in todo)
    status.set_dataset(name, n_done=len(ds.items) - n_todo, n_total=len(ds.items), n_errors=progress.n_errors)
    return progress_file, todo, progress


def append_batch(
    progress_file: ProgressLog,
    status: StatusFile,
    log: logging.Logger,
    name: str,
    items: list[MCItem],
    rows_by_setting: dict[str, list[RowScore]],
    secrets: list[str],
) -> int:
    """One scored batch of a run: its records appended (fsync'd) to the progress file, status.json updated,
    each failed sample logged; returns the run's sample errors so far (for runtime.max_sample_errors)."""
    records = [
        sample_record(item, {s: rows[j] for s, rows in rows_by_setting.items()}, secrets)
        for j, item in enumerate(items)
    ]
    progress_file.append(records)
    status.scored(name, len(records), sum(1 for r in records if r["error"]))
    status.write()
    for r in records:
        if r["error"]:
            log.error("%s: sample %s failed: %s", name, r["id"], r["error"])
    return sum(d["n_errors"] for d in status.datasets.values())


def score_datasets(
    plan: Plan,
    session: Session,
    *,
    status: StatusFile,
    registry: Registry,
    stop: StopFlag,
    log: logging.Logger,
    ui: ProgressUI | None = None,
) -> dict[str, dict[str, Any]]:
    """Score every dataset of the manifest to completion (or raise Preempted / RunFailed)."""
    m = plan.manifest
    datasets = load_datasets(m)
    infos = {name: dataset_info(ds, m) for name, ds in datasets.items()}
    logs: dict[str, ProgressLog] = {}
    todo: dict[str, list[list[MCItem]]] = {}
    for name, ds in datasets.items():
        logs[name], todo[name], _ = open_dataset(plan, name, ds, status, log)
        n_todo = sum(len(batch) for batch in todo[name])
        log.info(
            "%s: %d items (fingerprint %s), %d already scored, %d to score",
            name,
            len(ds.items),
            ds.fingerprint[:12],
            len(ds.items) - n_todo,
            n_todo,
        )
    status.write("running")
    if ui is not None:
        ui.start({name: status.datasets[name] for name in datasets})
    secrets = secret_values()
    beat = registry.heartbeat_every(plan.run_key)
    max_errors = m.runtime.max_sample_errors
    # one prefill per model for the C2C settings (qc2c.eval.shared); a stop signal abandons the batch in flight
    score_batch = stop.interruptible(score_settings)
    for name, batches in todo.items():
        try:
            for scorer in session.scorers.values():
                scorer.use_dataset(datasets[name].items)  # all evaluated items: pairings never depend on resume
        except ValueError as exc:
            raise RunFailed(f"dataset {name}: {exc}") from None
        for batch_items in batches:
            stop.check()
            rows_by_setting = score_batch(session.scorers, batch_items)
            total_errors = append_batch(logs[name], status, log, name, batch_items, rows_by_setting, secrets)
            if ui is not None:
                ui.advance(name, len(batch_items))
            beat()
            if total_errors > max_errors:
                raise RunFailed(
                    f"{total_errors} sample(s) raised (runtime.max_sample_errors is {max_errors}); "
                    f"see {logs[name].path} and logs/run.log"
                )
    stop.check()
    if ui is not None:
        ui.stop()
    n_done = sum(d["n_done"] for d in status.datasets.values())
    if n_done == 0:
        raise RunFailed("no sample was scored (empty dataset selection?); a run that scored nothing is not complete")
    return infos
