"""Training the latent wire (Stage A / Stage B) with every decoder frozen.

    trainer = LatentTrainer(cfg, optim, {"demo_receiver": (model, tokenizer), ...}, out_dir, seed=0)
    trainer.train(should_stop=..., on_step=...)          # checkpoints, diagnostics.jsonl, final/

Stage a (latent fit) alternates: even steps train the latent objectives (tf, first, kCE), odd steps distil
the text-prompted decoder (KD); the gist reconstruction trains on both. Stage b trains every objective every
step and starts from a stage-a run's final/ (a deep prefix it adds starts fresh). Every logged step writes
one diagnostics.jsonl line with, per decoder, tf / first / kCE / KD / gist and first_acc, the gradient norm
of each objective (summed over decoders, unweighted, before clipping), the latent-dropout keep probability,
the current K and the step's wall-clock seconds.

A batch is a pure function of (seed, step) and so is the latent-dropout mask, so a run resumed from
checkpoint-N continues exactly as the uninterrupted one would have (tested).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from qc2c.config import OptimConfig
from qc2c.latent import checkpoint as ckpt
from qc2c.latent.config import OBJECTIVES, LatentConfig
from qc2c.latent.data import LatentItem, decoder_tokens, latent_items, source_ids
from qc2c.latent.losses import objectives
from qc2c.latent.model import MAX_SOURCE, DecoderGeometry, LatentWire, latent_dropout
from qc2c.train.checkpointing import latest_checkpoint, remove_partial, set_rng_state
from qc2c.train.diagnostics import DiagnosticsLog
from qc2c.train.schedule import build_scheduler, total_optimizer_steps
from qc2c.train.sft import TrainingStopped

WEIGHT_OF = {"tf": "tf_weight", "first": "first_weight", "kCE": "kce_weight", "KD": "kd_weight", "gist": "gist_weight"}


def keep_probability(cfg: LatentConfig, step: int, total: int) -> float:
    """Latent-dropout keep probability at `step` (1-based): linear from keep_start to keep_end."""
    frac = (step - 1) / max(1, total - 1)
    return cfg.keep_start + (cfg.keep_end - cfg.keep_start) * frac


def current_k(cfg: LatentConfig, step: int, total: int) -> int:
    """K of kCE at `step`: linear from k_start to k_end, rounded down."""
    frac = (step - 1) / max(1, total - 1)
    return int(cfg.k_start + (cfg.k_end - cfg.k_start) * frac)


def step_mode(cfg: LatentConfig, step: int) -> str:
    """ "latent" / "text" (stage a, alternating) or "all" (stage b)."""
    if cfg.stage == "b":
        return "all"
    return "latent" if step % 2 == 1 else "text"


def step_weights(cfg: LatentConfig, mode: str) -> dict[str, float]:
    w = {name: float(getattr(cfg, WEIGHT_OF[name])) for name in OBJECTIVES}
    if not cfg.gist:
        w["gist"] = 0.0
    if mode == "latent":
        w["KD"] = 0.0
    elif mode == "text":
        w.update(tf=0.0, first=0.0, kCE=0.0)
    return w


def batch_indices(n_items: int, batch_size: int, seed: int, step: int) -> list[int]:
    """The items of optimizer step `step` (1-based): epochs are seeded permutations, read in order."""
    start = (step - 1) * batch_size
    epoch, out = start // n_items, []
    while len(out) < batch_size:
        perm = torch.randperm(n_items, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()
        offset = start - epoch * n_items if not out else 0
        out += perm[offset : offset + batch_size - len(out)]
        epoch += 1
    return out


@dataclass
class LatentTrainResult:
    steps: int
    total_steps: int
    resumed_from: int
    validation: dict[str, dict[str, float]]


class LatentTrainer:
    """Builds the wire for `decoders` ({key: (frozen model, tokenizer)}) and trains it."""

    def __init__(
        self,
        cfg: LatentConfig,
        optim: OptimConfig,
        decoders: dict[str, tuple[Any, Any]],
        out_dir: str | Path,
        *,
        seed: int = 0,
        save_steps: int = 50,
        init_from: Path | None = None,
        items: list[LatentItem] | None = None,
        validation: list[LatentItem] | None = None,
    ) -> None:
        self.cfg, self.optim, self.out, self.seed = cfg, optim, Path(out_dir), seed
        self.decoders, self.save_steps = decoders, save_steps
        for model, _ in decoders.values():
            model.requires_grad_(False).eval()
        torch.manual_seed(seed)
        geos = {k: DecoderGeometry.of(m) for k, (m, _) in decoders.items()}
        self.encoder_key = next(iter(decoders))  # the sender reads the source in the first decoder's tokens
        self.encoder_tokenizer = decoders[self.encoder_key][1]
        self.wire = LatentWire(cfg, geos, len(self.encoder_tokenizer))
        if init_from is not None:
            problems = ckpt.shape_problems(cfg, ckpt.read_config(init_from)["config"])
            if problems:
                raise ckpt.LatentCheckpointError("; ".join(problems))
            ckpt.load_parts(init_from, self.wire, allow_missing=("deep_prefix_", "gist_"))
        self.items = items if items is not None else latent_items(cfg.data, "train")
        self.validation = validation if validation is not None else latent_items(cfg.data, "validation")
        self.total_steps = total_optimizer_steps(len(self.items), optim.batch_size, 1, optim.epochs, optim.max_steps)
        params = [p for p in self.wire.parameters() if p.requires_grad]
        self.params = params
        self.optimizer = torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay)
        self.scheduler = build_scheduler(self.optimizer, optim.scheduler, self.total_steps, optim.warmup_ratio)
        self.log = DiagnosticsLog(self.out / "diagnostics.jsonl")
        self.refs: dict[str, str] | None = None  # decoder key -> model reference, written to latent.json

    # ---- one step ----

    def losses(self, batch: list[LatentItem], step: int) -> tuple[dict[str, dict[str, Any]], torch.Tensor]:
        ids, mask = source_ids(self.encoder_tokenizer, [it.source for it in batch], MAX_SOURCE)
        z = self.wire.encoder(ids, mask)
        gen = torch.Generator().manual_seed(self.seed * 7_919 + step)
        z = latent_dropout(z, keep_probability(self.cfg, step, self.total_steps), gen)
        k = current_k(self.cfg, step, self.total_steps)
        per_model = {}
        for key, (model, tok) in self.decoders.items():
            per_model[key] = objectives(self.wire, key, model, z, decoder_tokens(tok, batch), k)
        return per_model, z

    def step(self, step: int, log: bool) -> dict[str, Any]:
        t0 = time.perf_counter()
        self.wire.train()
        batch = [self.items[i] for i in batch_indices(len(self.items), self.optim.batch_size, self.seed, step)]
        per_model, _ = self.losses(batch, step)
        mode = step_mode(self.cfg, step)
        weights = step_weights(self.cfg, mode)
        sums = {name: sum(m[name] for m in per_model.values()) for name in OBJECTIVES}
        grad_norms = self._objective_grad_norms(sums) if log else None
        total = sum(weights[name] * sums[name] for name in OBJECTIVES)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        sq = sum(float(p.grad.pow(2).sum()) for p in self.params if p.grad is not None)
        torch.nn.utils.clip_grad_norm_(self.params, self.optim.max_grad_norm)
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        record = {
            "step": step,
            "stage": self.cfg.stage,
            "mode": mode,
            "loss": float(total.detach()),
            "lr": lr,
            "models": {
                key: {name: float(torch.as_tensor(v).detach()) for name, v in m.items()} for key, m in per_model.items()
            },
            "grad_norm": {**(grad_norms or {}), "total": sq**0.5},
            "keep_prob": keep_probability(self.cfg, step, self.total_steps),
            "K": current_k(self.cfg, step, self.total_steps),
            "wall_s": time.perf_counter() - t0,
        }
        return record

    def _objective_grad_norms(self, sums: dict[str, torch.Tensor]) -> dict[str, float]:
        """L2 norm of each objective's own gradient (unweighted, summed over decoders)."""
        out = {}
        for name in OBJECTIVES:
            if not sums[name].requires_grad:
                out[name] = 0.0
                continue
            grads = torch.autograd.grad(sums[name], self.params, retain_graph=True, allow_unused=True)
            out[name] = sum(float(g.pow(2).sum()) for g in grads if g is not None) ** 0.5
        return out

    # ---- the loop ----

    def train(
        self,
        *,
        should_stop: Callable[[], bool] = lambda: False,
        on_step: Callable[[int, dict[str, Any]], None] | None = None,
    ) -> LatentTrainResult:
        remove_partial(self.out)
        start = self._resume()
        t_start = time.perf_counter()
        for step in range(start + 1, self.total_steps + 1):
            log = step % self.cfg.log_every == 0 or step == self.total_steps
            record = self.step(step, log)
            record["elapsed_s"] = time.perf_counter() - t_start
            if log:
                self.log.append(record)
            if on_step is not None:
                on_step(step, record)
            stop = should_stop()
            if step % self.save_steps == 0 or step == self.total_steps or stop:
                self._save(step)
            if stop and step < self.total_steps:
                raise TrainingStopped(step)
        validation = self.evaluate(self.validation)
        decoders = {k: getattr(m, "name_or_path", k) for k, (m, _) in self.decoders.items()}
        extra = {"validation": validation, "encoder_tokenizer": self.encoder_key}
        ckpt.save_final(self.out, self.wire, self.refs or decoders, extra)
        return LatentTrainResult(self.total_steps - start, self.total_steps, start, validation)

    def _save(self, step: int) -> None:
        state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}
        ckpt.save_checkpoint(self.out, step, self.wire, state)

    def _resume(self) -> int:
        latest = latest_checkpoint(self.out)
        if latest is None:
            self.log.truncate_after(0)
            return 0
        ckpt.load_parts(latest, self.wire)
        state = torch.load(latest / "training_state.pt", map_location="cpu", weights_only=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        self.log.truncate_after(state["step"])
        return int(state["step"])

    @torch.no_grad()
    def evaluate(self, items: list[LatentItem]) -> dict[str, dict[str, float]]:
        """Teacher-forced first_acc and tf per decoder on `items` (no dropout): the validation figures."""
        if not items:
            return {}
        self.wire.eval()
        ids, mask = source_ids(self.encoder_tokenizer, [it.source for it in items], MAX_SOURCE)
        z = self.wire.encoder(ids, mask)
        out = {}
        for key, (model, tok) in self.decoders.items():
            got = objectives(self.wire, key, model, z, decoder_tokens(tok, items), self.cfg.k_end)
            out[key] = {"first_acc": got["first_acc"], "tf": float(got["tf"]), "n": len(items)}
        return out
