"""A sweep group in one process: the grid points of a sweep that differ only in `kv` share the models, the
baselines and, per batch, one receiver and one sharer prefill (`qc2c.eval.shared`).

`group_plans` sorts a sweep's plans into groups: eval runs whose manifests are equal but for `kv` and labels
(same pair, fuser, datasets, items, protocol, baselines, batch size, runtime) form one group; anything else
runs alone. `run_group` executes a group:

1. every grid point is claimed in the registry and gets its own run folder, logs/run.log, manifest.yaml and
   status.json, exactly as if it ran alone (a point another process owns exits 3; a complete one is skipped);
2. the pair, the fuser and the baseline scorers are loaded once; each point adds a `compressed` scorer over
   its own codec (`runner.session.grid_point_session`);
3. batch by batch (every point of a group plans the same batches: same items, same batch size), the
   baselines are scored once and every point that still needs the batch is scored from the shared prefills;
   each point's records (its settings in its own order) are appended, fsync'd, to ITS progress file;
4. each point writes its own provenance.json and results, and is marked complete in the registry.

A point resumed from a kill joins the group at its first missing batch; nothing is scored twice, nothing
lost. Per-point failures (its sample errors over runtime.max_sample_errors) fail that point only; a stop
signal preempts every unfinished point (exit 75), a failure of the shared work fails every unfinished point.

Working set: per batch the receiver's and the sharer's prefill caches of the fused section, plus ONE fused
cache view at a time (a point's view is dropped once its rows are scored) and every point's rows of that
batch (a few numbers per item). It does not grow with the number of grid points beyond those rows.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from qc2c.eval.batching import by_length
from qc2c.eval.shared import score_settings
from runner import fsio
from runner.exitcodes import EXIT_ALREADY_RUNNING, EXIT_OK, EXIT_RUN_FAILED
from runner.lifecycle import (
    Preempted,
    RunFailed,
    RunHandles,
    StopFlag,
    complete_run,
    fail_run,
    failure_reason,
    open_log,
    out_of_space,
    preempt_run,
    prepare_run_dir,
    write_manifest_yaml,
)
from runner.plan import Plan, decide
from runner.progress_ui import ProgressUI
from runner.provenance import secret_values
from runner.records import ProgressLog
from runner.registry import AlreadyRunning, Registry
from runner.scoring_loop import append_batch, dataset_info, load_datasets, open_dataset
from runner.session import Session, grid_point_session, load_session
from runner.status import StatusFile

COMPRESSED = "compressed"


def group_key(plan: Plan) -> str | None:
    """The key grid points share when they can be scored together; None for a plan that runs alone."""
    m = plan.manifest
    if m.kind != "eval" or m.fuser is None or m.eval is None or plan.problems:
        return None
    exclude = {"name": True, "description": True, "milestone": True, "kv": True}
    data = m.model_dump(mode="json", by_alias=True, exclude=exclude)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def group_plans(plans: list[Plan]) -> list[list[Plan]]:
    """Plans in groups of one process each (first-seen order); a plan that runs alone is a group of one."""
    groups: dict[str, list[Plan]] = {}
    out: list[list[Plan]] = []
    for plan in plans:
        key = group_key(plan) if plan.decision not in ("skip", "busy") else None
        if key is None:
            out.append([plan])
        elif key in groups:
            groups[key].append(plan)
        else:
            groups[key] = [plan]
            out.append(groups[key])
    return out


@dataclass
class Point:
    """One grid point of a running group: its plan, its run handles, its files, and where it joins each dataset."""

    plan: Plan
    run: RunHandles
    session: Session | None = None
    logs: dict[str, ProgressLog] = field(default_factory=dict)
    first_batch: dict[str, int] = field(default_factory=dict)
    beat: Any = None
    exit: int | None = None


def run_group(
    plans: list[Plan], *, container: dict[str, Any] | None = None, ui: ProgressUI | None = None
) -> dict[str, int]:
    """Execute a group (see module docstring); returns {run_key: exit code}."""
    registry = Registry(plans[0].runs_dir)
    exits: dict[str, int] = {}
    points: list[Point] = []
    stop = StopFlag()
    stop.install()
    try:
        for plan in plans:
            point = _claim(plan, registry, stop, exits)
            if point is not None:
                points.append(point)
        if points:
            _run_points(points, container=container, ui=ui)
    finally:
        stop.restore()
        for point in points:
            exits[point.plan.run_key] = point.exit if point.exit is not None else EXIT_RUN_FAILED
    return exits


def _claim(plan: Plan, registry: Registry, stop: StopFlag, exits: dict[str, int]) -> Point | None:
    try:
        before = registry.claim(plan.run_key, run_dir=str(plan.run_dir), manifest=plan.manifest.name)
    except AlreadyRunning as exc:
        print(f"{plan.run_dir}: {exc}; not started twice (exit {EXIT_ALREADY_RUNNING})", file=sys.stderr)
        exits[plan.run_key] = EXIT_ALREADY_RUNNING
        return None
    plan.decision, plan.reason = decide(before, plan.run_dir)
    if plan.decision == "skip":
        exits[plan.run_key] = EXIT_OK
        return None
    prepare_run_dir(plan)
    log = open_log(plan.run_dir, echo=False)
    log.info("run %s (%s): decision %s: %s", plan.run_tag, plan.run_key, plan.decision, plan.reason)
    write_manifest_yaml(plan)
    run = RunHandles(log, registry, StatusFile(plan.run_dir, plan.run_key), stop)
    run.status.write("running")
    return Point(plan, run)


def _run_points(points: list[Point], *, container: dict[str, Any] | None, ui: ProgressUI | None) -> None:
    """Score the claimed points; every point ends with an exit code and its status/registry entry written
    (runner.lifecycle's endings: complete, preempted, failed, out of space)."""
    try:
        t0 = time.monotonic()
        first = points[0].plan
        shared = load_session(first.manifest, first.fuser_ref, first.settings, latent_dir=first.latent_dir)
        for point in points:
            point.session = grid_point_session(shared, point.plan.manifest) if point is not points[0] else shared
            point.run.log.info(
                "loaded models on %s in %.1f s, in a sweep group of %d grid point(s) scored together",
                shared.device,
                time.monotonic() - t0,
                len(points),
            )
        infos = _score(points, ui)
        for point in _active(points):
            _finish(point, infos, container)
            point.exit = complete_run(point.plan, point.run)
    except Preempted as exc:
        for point in _active(points):
            point.exit = preempt_run(point.plan, point.run, exc)
    except Exception as exc:  # noqa: BLE001 - the shared work failed: every unfinished point fails with it
        if fsio.disk_full(exc):  # as runner.lifecycle: released, so a re-run resumes once space is freed
            for k, point in enumerate(_active(points)):
                point.exit = out_of_space(point.plan, point.run, exc, echo=k == 0)
            return
        for point in _active(points):
            point.run.log.debug("traceback:\n%s", traceback.format_exc())
            with contextlib.suppress(OSError):
                point.exit = _fail(point, failure_reason(exc))


def _fail(point: Point, reason: str) -> int:
    return fail_run(point.plan, point.run.log, point.run.status, point.run.registry, reason)


def _active(points: list[Point]) -> list[Point]:
    return [p for p in points if p.exit is None]


def _score(points: list[Point], ui: ProgressUI | None) -> dict[str, Any]:
    """The batch loop of the group; returns the datasets' infos (identical for every point)."""
    m, stop = points[0].plan.manifest, points[0].run.stop
    datasets = load_datasets(m)
    infos = {name: dataset_info(ds, m) for name, ds in datasets.items()}
    reference = {name: _planned_batches(ds.items, m.eval.batch_size) for name, ds in datasets.items()}
    for point in points:
        point.beat = point.run.registry.heartbeat_every(point.plan.run_key)
        for name, ds in datasets.items():
            point.logs[name], todo, _ = open_dataset(point.plan, name, ds, point.run.status, point.run.log)
            start = len(reference[name]) - len(todo)
            if [[i.id for i in b] for b in todo] != reference[name][start:]:
                raise RunFailed(f"{point.plan.run_dir}: its stored batch plan of {name} differs from the group's")
            point.first_batch[name] = start
        point.run.status.write("running")
    if ui is not None:
        ui.start({f"{name} × {len(points)} points": _totals(points, name) for name in datasets})
    secrets = secret_values()
    score_batch = stop.interruptible(score_settings)
    baselines = {s: sc for s, sc in points[0].session.scorers.items() if s != COMPRESSED}
    for name, ds in datasets.items():
        by_id = {item.id: item for item in ds.items}
        for scorer in [*baselines.values(), *(p.session.scorers[COMPRESSED] for p in points)]:
            scorer.use_dataset(ds.items)
        for index, ids in enumerate(reference[name]):
            stop.check()
            joining = [p for p in _active(points) if p.first_batch[name] <= index]
            if not joining:
                continue
            items = [by_id[i] for i in ids]
            scorers = dict(baselines) | {
                f"{COMPRESSED}@{k}": p.session.scorers[COMPRESSED] for k, p in enumerate(joining)
            }
            rows = score_batch(scorers, items)
            for k, point in enumerate(joining):
                own = {s: rows[f"{COMPRESSED}@{k}" if s == COMPRESSED else s] for s in point.plan.settings}
                _append(point, name, items, own, secrets)
            if ui is not None:
                ui.advance(f"{name} × {len(points)} points", len(items) * len(joining))
    stop.check()
    if ui is not None:
        ui.stop()
    for point in _active(points):
        if sum(d["n_done"] for d in point.run.status.datasets.values()) == 0:
            point.exit = _fail(point, "no sample was scored")
    return infos


def _planned_batches(items: list[Any], batch_size: int) -> list[list[str]]:
    ordered = [item.id for item in by_length(items)]
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]


def _totals(points: list[Point], name: str) -> dict[str, int]:
    return {
        "n_done": sum(p.run.status.datasets[name]["n_done"] for p in points),
        "n_total": sum(p.run.status.datasets[name]["n_total"] for p in points),
    }


def _append(point: Point, name: str, items: list[Any], rows: dict[str, list[Any]], secrets: list[str]) -> None:
    """One batch of one point: its records to its progress file, then its status, heartbeat and error budget
    (a point over runtime.max_sample_errors fails alone)."""
    total = append_batch(point.logs[name], point.run.status, point.run.log, name, items, rows, secrets)
    point.beat()
    limit = point.plan.manifest.runtime.max_sample_errors
    if total > limit:
        why = f"{total} sample(s) raised (runtime.max_sample_errors is {limit}); see {point.logs[name].path}"
        point.exit = _fail(point, why)


def _finish(point: Point, infos: dict[str, Any], container: dict[str, Any] | None) -> None:
    from runner.execute import write_outputs  # deferred: runner.execute imports the train path

    write_outputs(point.plan, point.session, infos, container, log=point.run.log)
