"""Plan a run: run key, run folder, registry decision, fuser resolution and preflight — before any model runs.

Decisions (registry entry / run folder → what `runner run` does):
  complete                      → skip      (never re-run, never downgraded)
  running, process alive        → busy      (refused: another process owns the run folder)
  invalid or failed             → rerun     (the old folder is moved to runs/<milestone>/.superseded/)
  progress files present        → resume    (a killed or preempted run; samples done are not scored again)
  nothing                       → new
The plan reads the registry without its lock, so its decision is a forecast: runner.lifecycle claims the run
(Registry.claim, one locked compare-and-set) and decides again from what the claim saw.
A skip names the folder that holds the complete run (a renamed copy of a manifest has the same run key).
The run tag `<name>-<run_key[:10]>` depends only on the manifest, so a requeued job finds its folder again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qc2c.errors import ProblemsError
from runner.latent_plan import resolve_latent
from runner.registry import Entry, Registry

if TYPE_CHECKING:  # runner.schema imports torch, which remote/ (it imports PlanError from here) does not need
    from runner.schema import Manifest

DECISIONS = ("new", "resume", "skip", "rerun", "busy")


class PlanError(ProblemsError):
    """A plan-time refusal (missing fuser, from_run without a complete run, ...); `.problems` lists them."""


@dataclass
class Plan:
    manifest: Manifest
    source: Path | None  # the manifest file (None for a sweep member)
    runs_dir: Path
    run_key: str
    run_tag: str
    run_dir: Path
    decision: str
    reason: str
    entry: Entry | None
    fuser_ref: str | dict[str, Any] | None = None
    fuser_source: str | None = None
    problems: list[str] = field(default_factory=list)
    kd_cache_dir: str | None = None  # train.kd's cache folder (from_run resolved), objective kd only
    latent_dir: str | None = None  # eval.latent / train.latent.from_run as a final/ folder (runner.latent_plan)

    @property
    def settings(self) -> list[str]:
        """The settings this run scores: the compressed message path (when a fuser is given) + baselines."""
        baselines = list(self.manifest.eval.baselines) if self.manifest.eval else []
        return (["compressed"] if self.manifest.fuser is not None else []) + baselines

    def to_json(self) -> dict[str, Any]:
        return {
            "run_key": self.run_key,
            "run_dir": str(self.run_dir),
            "run_tag": self.run_tag,
            "decision": self.decision,
            "reason": self.reason,
            "settings": self.settings,
            "fuser": self.fuser_source,
            "problems": self.problems,
        }


def default_runs_dir() -> Path:
    """runs/ in the working directory, or $QC2C_RUNS_DIR (where results go; never changes a result)."""
    return Path(os.environ.get("QC2C_RUNS_DIR", "runs"))


def has_progress(run_dir: Path) -> bool:
    progress = run_dir / "progress"
    return progress.is_dir() and any(p.stat().st_size > 0 for p in progress.glob("*.jsonl"))


def decide(entry: Entry | None, run_dir: Path) -> tuple[str, str]:
    if entry is not None and entry.status == "complete":
        return "skip", f"complete since {entry.updated} ({entry.run_dir})"
    if entry is not None and entry.is_live():
        return "busy", f"pid {entry.pid} on {entry.host}, since {entry.raw.get('started') or entry.heartbeat}"
    if entry is not None and entry.status in ("invalid", "failed"):
        why = f": {entry.reason}" if entry.reason else ""
        return "rerun", f"registry says {entry.status}{why}"
    if has_progress(run_dir):
        return "resume", f"progress found in {run_dir / 'progress'}"
    return "new", "no registry entry and no progress"


def resolve_fuser(manifest: Manifest, registry: Registry) -> tuple[str | dict[str, Any] | None, str | None]:
    """The fuser reference `qc2c.fuser.checkpoint.load_fuser` takes (path, "tiny:a+b" or a hub dict) and a
    human-readable source. `from_run: NAME` becomes the final/ of NAME's latest complete run."""
    fuser = manifest.fuser
    if fuser is None:
        return None, None
    if fuser.path is not None:
        return fuser.path, fuser.path
    if fuser.hub is not None:
        hub = fuser.hub.model_dump(mode="json")
        return hub, f"hub:{hub['repo']}/{hub.get('subfolder') or ''}@{hub['revision']}"
    entry = registry.latest_complete(fuser.from_run)
    if entry is None or entry.run_dir is None:
        raise PlanError(
            [
                f"fuser.from_run: no complete run of manifest {fuser.from_run!r} in {registry.path} "
                f"(run it first: make run MANIFEST=manifests/{fuser.from_run}.yaml)"
            ]
        )
    final = Path(entry.run_dir) / "final"
    if not final.is_dir():
        raise PlanError([f"fuser.from_run: run {entry.run_dir} of {fuser.from_run!r} has no final/ folder"])
    return str(final), f"from_run:{fuser.from_run}@{entry.key[:10]}"


def make_plan(manifest: Manifest, *, source: Path | None, runs_dir: Path | None = None) -> Plan:
    """Everything `runner run` decides before loading a model (no side effects on disk)."""
    runs_dir = runs_dir or default_runs_dir()
    registry = Registry(runs_dir)
    run_key = manifest.run_key()
    run_tag = f"{manifest.name}-{run_key[:10]}"
    run_dir = runs_dir / manifest.milestone / run_tag
    entry = registry.get(run_key)
    decision, reason = decide(entry, run_dir)
    if decision == "skip" and entry is not None and entry.run_dir:
        run_dir = Path(entry.run_dir)  # names are not in the run key: a renamed copy's run lives elsewhere
    plan = Plan(manifest, source, runs_dir, run_key, run_tag, run_dir, decision, reason, entry)
    if decision != "skip":
        try:
            plan.fuser_ref, plan.fuser_source = resolve_fuser(manifest, registry)
        except PlanError as exc:
            plan.problems.extend(exc.problems)
        try:
            plan.kd_cache_dir = resolve_kd_cache(manifest, registry)
        except PlanError as exc:
            plan.problems.extend(exc.problems)
        plan.latent_dir, latent_problems = resolve_latent(manifest, registry)
        plan.problems.extend(latent_problems)
    return plan


def resolve_kd_cache(manifest: Manifest, registry: Registry) -> str | None:
    """train.kd's cache folder: `path` as given, `from_run: NAME` the run folder of NAME's latest complete run."""
    kd = manifest.train.kd if manifest.train is not None else None
    if kd is None or kd.path is not None:
        return None if kd is None else kd.path
    entry = registry.latest_complete(kd.from_run)
    if entry is None or entry.run_dir is None or not (Path(entry.run_dir) / "meta.json").is_file():
        raise PlanError(
            [
                f"train.kd.from_run: no complete kind: kd_cache run of manifest {kd.from_run!r} in {registry.path} "
                f"(build it first: make run MANIFEST=manifests/{kd.from_run}.yaml)"
            ]
        )
    return str(entry.run_dir)
