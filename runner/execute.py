"""Execute a planned run: dispatch on the manifest's kind, and the body of a `kind: eval` run.

An eval run loads the session (pair, fuser, codec, one scorer per setting), scores every dataset in
batches (runner.scoring_loop), writes provenance.json and the results files (runner.summarize). A
`kind: train` run goes to runner.train_exec, a `kind: kd_cache` run to runner.kd_cache_exec. All run inside
runner.lifecycle, which claims the run, prepares its folder and decides its status and exit code.

Durability: each batch's records are appended and fsync'd before the next batch starts, so a SIGKILL loses
at most the batch in flight and a re-run resumes from the progress files (no sample scored twice, none
lost). A stop signal is checked between batches; while a batch is being scored (which writes nothing, and
may be a long generation) the signal abandons it at once. Either way the records on disk are whole batches;
status.json says "preempted" and the exit code is EXIT_PREEMPTED (75).
Per-sample exceptions are recorded in the progress line; more than runtime.max_sample_errors fails the run.
A run that scored nothing is never complete.
"""

from __future__ import annotations

import time
from typing import Any

from runner import fsio
from runner.kd_cache_exec import run_kd_cache_plan
from runner.latent_exec import run_latent_train_plan
from runner.lifecycle import REPO_ROOT, RunHandles, execute_lifecycle
from runner.plan import Plan
from runner.progress_ui import ProgressUI
from runner.provenance import collect
from runner.scoring_loop import score_datasets
from runner.session import Session, load_session
from runner.summarize import write_results
from runner.train_exec import run_train_plan


def run_plan(plan: Plan, *, container: dict[str, Any] | None = None, ui: ProgressUI | None = None) -> int:
    """Execute `plan` (decision new / resume / rerun); returns an exit code from runner.exitcodes."""
    if plan.manifest.kind == "train" and plan.manifest.train.method == "latent":
        return run_latent_train_plan(plan, container=container, ui=ui)
    if plan.manifest.kind == "train":
        return run_train_plan(plan, container=container, ui=ui)
    if plan.manifest.kind == "kd_cache":
        return run_kd_cache_plan(plan, container=container, ui=ui)
    return run_eval_plan(plan, container=container, ui=ui)


def run_eval_plan(plan: Plan, *, container: dict[str, Any] | None = None, ui: ProgressUI | None = None) -> int:
    """Score (or resume) every setting of a `kind: eval` plan; returns an exit code from runner.exitcodes."""

    def evaluate(run: RunHandles) -> str:
        t0 = time.monotonic()
        session = load_session(plan.manifest, plan.fuser_ref, plan.settings, latent_dir=plan.latent_dir)
        for scorer in session.scorers.values():  # a stop signal abandons the batch in flight (nothing written)
            scorer.score_rows = run.stop.interruptible(scorer.score_rows)
        run.log.info(
            "loaded models on %s in %.1f s; settings: %s",
            session.device,
            time.monotonic() - t0,
            ", ".join(plan.settings),
        )
        run.stop.check()
        datasets_info = score_datasets(
            plan, session, status=run.status, registry=run.registry, stop=run.stop, log=run.log, ui=ui
        )
        write_outputs(plan, session, datasets_info, container, log=run.log)
        return ""

    return execute_lifecycle(plan, evaluate, echo=ui is None or not ui.live)


def write_outputs(
    plan: Plan, session: Session, datasets_info: dict[str, Any], container: dict[str, Any] | None, *, log: Any
) -> None:
    """provenance.json and results/<dataset>.json of a scored eval run (one run, or one point of a sweep group)."""
    provenance = collect(
        repo=REPO_ROOT,
        device=session.device,
        run_key=plan.run_key,
        models=session.info["models"],
        fuser=session.info.get("fuser"),
        datasets=datasets_info,
        container=container,
    )
    fsio.atomic_write_json(plan.run_dir / "provenance.json", provenance)
    write_results(plan, session, datasets_info, provenance, log=log)
