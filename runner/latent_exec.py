"""Execute a `kind: train` run with `train.method: latent` (Stage A or B of the latent wire, qc2c.latent.train).

The run folder is the wire: checkpoint-N/ and final/ (encoder.pt, adapter_<m>.pt, deep_prefix_<m>.pt,
gist_<m>.pt; final/latent.json), diagnostics.jsonl (one line per logged step), manifest.yaml,
provenance.json, logs/run.log and status.json ("train": optimizer steps done of total). The decoders are
the manifest's pair.receiver and pair.sharer (frozen); the encoder reads the receiver's tokens. A stage-b run
starts from `train.latent.from_run`'s final/. A re-run resumes from the latest checkpoint; SIGTERM / SIGINT
/ SIGUSR1 / SIGHUP stop after the current step with a checkpoint and exit 75, like every train run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from qc2c.train.sft import TrainingStopped
from runner import fsio
from runner.lifecycle import REPO_ROOT, Preempted, RunHandles, execute_lifecycle
from runner.plan import Plan
from runner.progress_ui import ProgressUI
from runner.provenance import collect
from runner.session import _model_info, load_manifest_pair, resolve_device


def decoders_of(m: Any, pair: Any) -> dict[str, tuple[Any, Any]]:
    """{model_key: (model, tokenizer)} for pair.receiver then pair.sharer (the receiver's tokenizer is the
    encoder's)."""
    from qc2c.latent.model import model_key

    return {
        model_key(m.pair.receiver): (pair.receiver, pair.receiver_tokenizer),
        model_key(m.pair.sharer): (pair.sharer, pair.sharer_tokenizer),
    }


def run_latent_train_plan(plan: Plan, *, container: dict[str, Any] | None = None, ui: ProgressUI | None = None) -> int:
    """Train (or resume) the latent wire of `plan`; returns an exit code from runner.exitcodes."""

    def train(run: RunHandles) -> str:
        import torch

        from qc2c.dtypes import DTYPES
        from qc2c.latent.model import model_key
        from qc2c.latent.train import LatentTrainer
        from qc2c.train.checkpointing import latest_checkpoint

        log, status, registry, m = run.log, run.status, run.registry, plan.manifest
        device = resolve_device(m.runtime.device)
        t0 = time.monotonic()
        p = m.pair
        pair = load_manifest_pair(m, dtype=DTYPES[m.runtime.dtype], device=torch.device(device))
        cfg = m.train.latent.config()
        init = Path(plan.latent_dir) if plan.latent_dir else None
        trainer = LatentTrainer(
            cfg,
            m.train.optim.config(),
            decoders_of(m, pair),
            plan.run_dir,
            seed=m.runtime.seed,
            save_steps=m.train.save_steps,
            init_from=init,
        )
        trainer.refs = {model_key(p.receiver): p.receiver, model_key(p.sharer): p.sharer}
        log.info(
            "latent stage %s: decoders %s, %s on %s in %.1f s; %d items, %d optimizer steps",
            cfg.stage,
            p.receiver,
            p.sharer,
            device,
            time.monotonic() - t0,
            len(trainer.items),
            trainer.total_steps,
        )
        status.set_dataset("train", n_done=0, n_total=trainer.total_steps, n_errors=0)
        beat = registry.heartbeat_every(plan.run_key)

        first_step: list[int] = []

        def on_step(step: int, record: dict[str, Any]) -> None:
            entry = status.datasets["train"]
            if entry["n_done"] == 0 and step > 1:  # resumed: earlier steps are done, not this rate
                entry["n_done"] = step - 1
            first_step[:] = first_step or [step]
            status.scored("train", 1, 0)
            status.write()
            beat()
            if step % 25 == 0 or step == trainer.total_steps:
                accs = ", ".join(f"{k} first_acc {v['first_acc']:.2f}" for k, v in record["models"].items())
                eta = record["elapsed_s"] / (step - first_step[0] + 1) * (trainer.total_steps - step)
                log.info("step %d/%d: loss %.4f (%s), eta %.0f s", step, trainer.total_steps, record["loss"], accs, eta)

        latest = latest_checkpoint(plan.run_dir)
        if latest is not None:
            log.info("resuming from %s", latest.name)
        try:
            result = trainer.train(should_stop=lambda: run.stop.signal is not None, on_step=on_step)
        except TrainingStopped as exc:  # a checkpoint was written first: the re-run resumes from it
            raise Preempted(str(exc)) from exc
        for key, v in result.validation.items():
            log.info("validation (%d V facts): %s first_acc %.3f, tf %.4f", v["n"], key, v["first_acc"], v["tf"])
        provenance = collect(
            repo=REPO_ROOT,
            device=device,
            run_key=plan.run_key,
            models=_model_info(pair),
            fuser={"init_from": plan.latent_dir},
            container=container,
            datasets={"train": {"latent": cfg.data, "n_items": len(trainer.items), "total_steps": result.total_steps}},
        )
        fsio.atomic_write_json(plan.run_dir / "provenance.json", provenance)
        return f" (latent wire in {plan.run_dir / 'final'})"

    return execute_lifecycle(plan, train, label="latent train run")
