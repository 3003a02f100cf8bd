"""Execute a planned `kind: train` run: run folder, registry, status, resume, preemption.

The run folder is the fuser: `runs/<milestone>/<run_tag>/` holds config.json (the recipe), checkpoint-N/
and final/ (published layout), diagnostics.jsonl (one line per optimizer step), manifest.yaml,
provenance.json, logs/run.log and status.json ("train": n_done = optimizer steps done of n_total).
A kind: eval manifest loads it with `fuser: {from_run: <this manifest's name>}` (runner.plan resolves
it to final/ of the latest complete run).

A re-run of the same manifest resumes from the latest checkpoint (after SIGKILL, at most save_steps of
work is lost). SIGTERM / SIGINT / SIGUSR1 / SIGHUP stop after the current optimizer step, write a checkpoint, mark
the run preempted and exit 75. A `fuser:` in a train manifest is the starting point (fine-tuning).
"""

from __future__ import annotations

import time
from typing import Any

from qc2c.train.checkpointing import latest_checkpoint
from qc2c.train.kd import KDTrainer
from qc2c.train.sft import Trainer, TrainingStopped, TrainSpec
from runner import fsio
from runner.lifecycle import REPO_ROOT, Preempted, RunHandles, execute_lifecycle
from runner.plan import Plan
from runner.progress_ui import ProgressUI
from runner.provenance import collect
from runner.session import _model_info, resolve_device


def run_train_plan(plan: Plan, *, container: dict[str, Any] | None = None, ui: ProgressUI | None = None) -> int:
    """Train (or resume) the fuser of `plan`; returns an exit code from runner.exitcodes. `ui` is unused: a
    train run reports through logs/run.log and status.json."""

    def train(run: RunHandles) -> str:
        log, status, registry, m = run.log, run.status, run.registry, plan.manifest
        data = m.model_dump(mode="json", by_alias=True)
        data["runtime"]["device"] = resolve_device(m.runtime.device)
        spec = TrainSpec.from_manifest(data)
        t0 = time.monotonic()
        if spec.train.objective == "kd":  # top-K logit distillation from a kind: kd_cache run (qc2c.train.kd)
            trainer = KDTrainer(spec, plan.run_dir, cache_dir=plan.kd_cache_dir, init_from=plan.fuser_ref)
        else:
            trainer = Trainer(spec, plan.run_dir, init_from=plan.fuser_ref)
        log.info(
            "loaded pair on %s in %.1f s; %d conversations (%d dropped: longer than max_length), %d optimizer steps",
            spec.device,
            time.monotonic() - t0,
            len(trainer.examples),
            trainer.n_dropped,
            trainer.total_steps,
        )
        status.set_dataset("train", n_done=0, n_total=trainer.total_steps, n_errors=0)
        beat = registry.heartbeat_every(plan.run_key)

        def on_step(step: int, record: dict[str, Any]) -> None:
            entry = status.datasets["train"]
            if entry["n_done"] == 0 and step > 1:  # resumed: count earlier steps as done, not as this rate
                entry["n_done"] = step - 1
            status.scored("train", 1, 0)
            status.write()
            beat()
            log.debug(
                "step %d loss %.5f lr %.3g T %.4g", step, record["loss"], record["lr"], record["gate_temperature"]
            )
            if record.get("eval_loss") is not None:
                log.info(
                    "step %d/%d: train loss %.4f, eval loss %.4f",
                    step,
                    trainer.total_steps,
                    record["loss"],
                    record["eval_loss"],
                )

        latest = latest_checkpoint(plan.run_dir)
        if latest is not None:
            log.info("resuming from %s", latest.name)
        try:
            result = trainer.train(should_stop=lambda: run.stop.signal is not None, on_step=on_step)
        except TrainingStopped as exc:  # a checkpoint was written first: the re-run resumes from it
            raise Preempted(str(exc)) from exc
        log.info("trained %d steps; last loss %s", result.steps, f"{result.losses[-1]:.4f}" if result.losses else "-")
        train_data = {
            **(vars(spec.train.data) if spec.train.data is not None else kd_data(trainer)),
            "n_examples": len(trainer.examples),
            "n_eval": len(trainer.eval_examples),
            "n_dropped_too_long": trainer.n_dropped,
            "total_steps": trainer.total_steps,
        }
        provenance = collect(
            repo=REPO_ROOT,
            device=spec.device,
            run_key=plan.run_key,
            models=_model_info(trainer.pair),
            fuser={"init_from": plan.fuser_source},
            container=container,
            datasets={"train": train_data},
        )
        fsio.atomic_write_json(plan.run_dir / "provenance.json", provenance)
        return f" (fuser in {plan.run_dir / 'final'})"

    return execute_lifecycle(plan, train, label="train run")


def kd_data(trainer: KDTrainer) -> dict[str, Any]:
    """provenance of a KD run's data: the cache it read (folder, content hash, teacher)."""
    meta = trainer.cache.meta
    keep = ("name", "content_sha256", "n_rows", "max_length", "top_k", "random_negatives", "teacher")
    return {"kd_cache": str(trainer.cache.folder), **{k: meta.get(k) for k in keep}}
