"""Supervised training of the C2C projectors with both LLMs frozen (docs/c2c.md §6).

    spec = TrainSpec.from_manifest(manifest_json)      # qc2c.train.spec: pair, train, kv and runtime settings
    result = Trainer(spec, out_dir).train()           # checkpoints, diagnostics.jsonl, final/

The sharer runs under no_grad in eval mode; the receiver's weights are frozen but it runs in the autograd
graph, so the loss (next-token CE on the response, given the fused prompt) reaches the projectors through
the fused cache. 1 % of the conversations are held out (as the reference's 99/1 split) and their loss is
logged at every checkpoint. Projectors train in train mode (dropout, Gumbel-sigmoid gates whose temperature anneals
after every optimizer step). With `train.qat` the manifest's codec sits between the sharer and the fusion
(qc2c.train.qat). A run resumes from its latest checkpoint: weights, optimizer, scheduler, RNG states and
the data position are restored, so the loss curve continues as if it had never stopped.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qc2c.dtypes import DTYPES
from qc2c.fuser.checkpoint import Fuser
from qc2c.fuser.fuse import FusePlan, fused_forward
from qc2c.fuser.layer_map import LAYER_MAPS
from qc2c.fuser.preflight import kv_shape
from qc2c.fuser.projector import C2CProjector
from qc2c.train import checkpointing as ckpt
from qc2c.train.data import Example, TrainBatch, build_examples, collate, load_conversations, micro_batches
from qc2c.train.diagnostics import DiagnosticsLog, Progress, gate_logits, grad_norms, peak_memory_bytes
from qc2c.train.grad_ckpt import checkpointed_layers
from qc2c.train.schedule import anneal_temperature, build_optimizer, build_scheduler, total_optimizer_steps
from qc2c.train.spec import TrainSpec

EVAL_FRACTION = 0.01  # the reference's 99/1 random_split of the training conversations


def split_eval(examples: list[Example], seed: int) -> tuple[list[Example], list[Example]]:
    """(train, eval): floor(1 %) of the examples held out by a seeded permutation (none below 100 examples)."""
    n_eval = int(len(examples) * EVAL_FRACTION)
    if n_eval == 0:
        return examples, []
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed)).tolist()
    held = set(order[:n_eval])
    return [e for i, e in enumerate(examples) if i not in held], [examples[i] for i in order[:n_eval]]


class TrainingStopped(Exception):
    """A stop was requested; the state up to `step` is in a checkpoint."""

    def __init__(self, step: int) -> None:
        super().__init__(f"stopped after step {step} (checkpoint written)")
        self.step = step


@dataclass
class TrainResult:
    out_dir: Path
    steps: int
    total_steps: int
    resumed_from: int
    losses: list[float] = field(default_factory=list)
    n_examples: int = 0
    n_dropped: int = 0


class Trainer:
    """Builds the pair, data, projectors, optimizer and schedule of a TrainSpec; `train()` runs it."""

    def __init__(
        self,
        spec: TrainSpec,
        out_dir: str | Path,
        *,
        pair: Any = None,
        conversations: Sequence[Any] | None = None,
        init_from: Any = None,
    ) -> None:
        """`init_from`: a fuser reference (path / tiny: / hub dict) whose weights start the run (fine-tuning)."""
        from qc2c.models.align import TokenAligner
        from qc2c.models.pair import load_pair

        self.spec, self.out = spec, Path(out_dir)
        self.device, self.dtype = torch.device(spec.device), DTYPES[spec.dtype]
        self.pair = pair or load_pair(
            spec.receiver,
            spec.sharer,
            receiver_revision=spec.receiver_revision,
            sharer_revision=spec.sharer_revision,
            dtype=self.dtype,
            device=self.device,
        )
        for model in (self.pair.receiver, self.pair.sharer):
            model.requires_grad_(False).eval()
        if spec.alignment is None and not self.pair.same_tokenizer:
            raise ValueError(
                "pair.alignment: none, but the receiver and sharer tokenizers differ (the sharer would read receiver "
                "token ids); set pair.alignment: first or longest"
            )
        self.aligner = (
            TokenAligner(self.pair.receiver_tokenizer, self.pair.sharer_tokenizer, spec.alignment)
            if spec.alignment
            else None
        )
        tok = self.pair.receiver_tokenizer
        examples, self.n_dropped = self._load_examples(conversations)
        self.examples, self.eval_examples = split_eval(examples, spec.seed)
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        s_tok = self.pair.sharer_tokenizer
        self.sharer_pad_id = s_tok.pad_token_id if s_tok.pad_token_id is not None else s_tok.eos_token_id
        o = spec.optim
        self.total_steps = total_optimizer_steps(len(self.examples), o.batch_size, o.grad_accum, o.epochs, o.max_steps)
        self._build_fuser()
        if init_from is not None:
            self._init_from(init_from)
        self.optimizer = build_optimizer(self.fuser.projectors, o.lr, o.weight_decay)
        self.scheduler = build_scheduler(self.optimizer, o.scheduler, self.total_steps, o.warmup_ratio)
        self.message_path = self._message_path()
        self.diagnostics = DiagnosticsLog(self.out / "diagnostics.jsonl")

    # ---- construction ----

    def _load_examples(self, conversations: Sequence[Any] | None) -> tuple[list[Example], int]:
        """(examples, n dropped as longer than max_length) of `train.data` (qc2c.train.kd reads a KD cache)."""
        data = self.spec.train.data
        convs = conversations if conversations is not None else load_conversations(data)
        out = build_examples(convs, self.pair.receiver_tokenizer, self.aligner, data.max_length)
        if not out[0]:
            raise ValueError(f"train.data: no conversation fits max_length {data.max_length}")
        return out

    def _build_fuser(self) -> None:
        r_layers, r_heads, r_dim = kv_shape(self.pair.receiver.config)
        s_layers, s_heads, s_dim = kv_shape(self.pair.sharer.config)
        params = asdict(self.spec.projector)
        del params["type"]
        params["anneal_steps"] = params["anneal_steps"] or self.total_steps  # the whole run by default
        self.init_args = [
            {
                "source_dim": s_dim,
                "target_dim": r_dim,
                "source_num_heads": s_heads,
                "target_num_heads": r_heads,
                "dtype": self.dtype,
                **params,
            }
            for _ in range(r_layers)
        ]
        torch.manual_seed(self.spec.seed)
        projectors = nn.ModuleList(C2CProjector(**args) for args in self.init_args).to(self.device)
        layer_map = LAYER_MAPS.get(self.spec.train.layer_map)(r_layers, s_layers)
        self.fuser = Fuser(
            projectors, layer_map, {t: t for t in layer_map}, self.recipe(params), self.init_args, self.out, sha256=""
        )
        self.n_layers = (r_layers, s_layers)

    def _init_from(self, ref: Any) -> None:
        from qc2c.fuser.checkpoint import strict_load
        from qc2c.fuser.sources import load_fuser

        start = load_fuser(ref)
        if start.layer_map != self.fuser.layer_map:
            raise ValueError(f"fuser {start.source}: its layer map differs from train.layer_map for this pair")
        for i, (mine, theirs) in enumerate(zip(self.fuser.projectors, start.projectors, strict=True)):
            state = {k: v.to(self.dtype) if v.is_floating_point() else v for k, v in theirs.state_dict().items()}
            strict_load(mine, state, f"{start.source}: projector_{i}")
        self.fuser.recipe["qc2c"]["init_from"] = start.source
        self.fuser.recipe["qc2c"]["init_sha256"] = start.sha256

    def _message_path(self) -> Any:
        if not self.spec.train.qat:
            return None
        from qc2c.train.qat import build_qat_path

        r_layers, s_layers = self.n_layers
        return build_qat_path(
            self.spec.kv, layer_map=dict(self.fuser.layer_map), n_sharer_layers=s_layers, n_receiver_layers=r_layers
        )

    def recipe(self, params: dict[str, Any]) -> dict[str, Any]:
        """config.json: the reference recipe's keys (what preflight and the upstream loaders read) + qc2c's."""
        s, o = self.spec, self.spec.optim
        return {
            "model": {
                "base_model": s.receiver,
                "teacher_model": s.sharer,
                "is_do_alignment": s.alignment is not None,
                "alignment_strategy": s.alignment or "first",
                "projector": {"type": "C2CProjector", "params": params},
                "mapping": s.train.layer_map,
            },
            "training": {
                "learning_rate": o.lr,
                "weight_decay": o.weight_decay,
                "num_epochs": o.epochs,
                "max_steps": o.max_steps,
                "max_length": s.train.data.max_length if s.train.data is not None else None,
                "scheduler_type": o.scheduler,
                "warmup_ratio": o.warmup_ratio,
                "max_grad_norm": o.max_grad_norm,
                "gradient_accumulation_steps": o.grad_accum,
                "per_device_train_batch_size": o.batch_size,
                "freeze": ["teacher", "base"],
                "seed": s.seed,
                "dtype": s.dtype,
                "total_steps": self.total_steps,
            },
            "output": {"save_steps": s.train.save_steps},
            "data": asdict(s.train.data) if s.train.data is not None else None,
            "qc2c": {
                "name": s.name,
                "receiver_revision": s.receiver_revision,
                "sharer_revision": s.sharer_revision,
                "qat": s.train.qat,
                "kv": asdict(s.kv) if s.train.qat else None,
            },
        }

    # ---- one step ----

    def evaluate(self) -> float | None:
        """Mean loss on the held-out split under no_grad with hard gates and no dropout (None: no split)."""
        if not self.eval_examples:
            return None
        bs, total, n = self.spec.optim.batch_size, 0.0, 0
        self.fuser.projectors.eval()
        with torch.no_grad():
            for i in range(0, len(self.eval_examples), bs):
                rows = self.eval_examples[i : i + bs]
                total += float(self.compute_loss(self.make_batch(rows))) * len(rows)
                n += len(rows)
        self.fuser.projectors.train()
        return total / n

    def make_batch(self, rows: Sequence[Example]) -> TrainBatch:
        return collate(rows, self.pad_id, self.sharer_pad_id)

    def student_logits(self, batch: TrainBatch) -> Tensor:
        """(B, last_len, V) logits of the last section given the fused prefix (train.gradient_checkpointing:
        the receiver's layers recompute their activations in backward, qc2c.train.grad_ckpt)."""
        plan = FusePlan.from_runs(batch.fuse_mask, batch.last_len)
        with checkpointed_layers(self.pair.receiver, self.spec.train.gradient_checkpointing):
            out = fused_forward(
                self.pair.receiver,
                self.pair.sharer,
                self.fuser,
                plan,
                batch.input_ids,
                attention_mask=batch.attention_mask,
                position_ids=batch.position_ids,
                sharer_input_ids=batch.sharer_input_ids,
                sharer_attention_mask=batch.sharer_attention_mask,
                message_path=self.message_path,
            )
        return out.logits

    def compute_loss(self, batch: TrainBatch) -> Tensor:
        """Next-token CE over the response labels of the last section, given the fused prefix. Scalar fp32."""
        batch = batch.to(self.device)
        logits = self.student_logits(batch)[:, :-1].float()
        labels = batch.labels[:, 1:]
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)

    def optimizer_step(self, batches: Sequence[Sequence[Example]]) -> dict[str, Any]:
        """One optimizer step over `batches` (grad accumulation); returns loss, tokens, grad norms, lr."""
        self.fuser.projectors.train()
        loss_sum, tokens = 0.0, 0
        for rows in batches:
            batch = self.make_batch(rows)
            loss = self.compute_loss(batch)
            (loss / len(batches)).backward()
            loss_sum += float(loss.detach()) / len(batches)
            tokens += batch.n_tokens
        norms = grad_norms(self.fuser.projectors)
        torch.nn.utils.clip_grad_norm_(self.fuser.projectors.parameters(), self.spec.optim.max_grad_norm)
        lr = float(self.scheduler.get_last_lr()[0])
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {"loss": loss_sum, "tokens": tokens, "grad_norm": norms, "lr": lr}

    # ---- the run ----

    def resume(self) -> int:
        """Restore the latest checkpoint under out_dir (if any); returns its step (0 = fresh start)."""
        ckpt.remove_partial(self.out)
        latest = ckpt.latest_checkpoint(self.out)
        if latest is None:
            return 0
        state = ckpt.load_checkpoint(latest, self.fuser.projectors)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        ckpt.set_rng_state(state["rng"])
        step = int(state["step"])
        anneal_temperature(self.fuser.projectors, step)
        self.diagnostics.truncate_after(step)
        return step

    def save(self, step: int, loss: float) -> Path:
        state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "loss": loss,
            "micro_batch": step * self.spec.optim.grad_accum,
            "total_steps": self.total_steps,
        }
        return ckpt.save_checkpoint(self.out, step, self.fuser.projectors, self.fuser.layer_map, self.init_args, state)

    def train(
        self,
        *,
        should_stop: Callable[[], bool] | None = None,
        on_step: Callable[[int, dict[str, Any]], None] | None = None,
        progress: bool = True,
    ) -> TrainResult:
        """Run (or resume) to total_steps; raises TrainingStopped after checkpointing when should_stop()."""
        o, save_steps = self.spec.optim, self.spec.train.save_steps
        ckpt.write_recipe(self.out, self.fuser.recipe)
        start = self.resume()
        if start == 0:
            random.seed(self.spec.seed)
        result = TrainResult(
            self.out, start, self.total_steps, start, n_examples=len(self.examples), n_dropped=self.n_dropped
        )
        data = micro_batches(self.examples, o.batch_size, self.spec.seed, start=start * o.grad_accum)
        bar = Progress(self.total_steps, start, enabled=progress)
        t_run, done_here = time.monotonic(), 0
        try:
            for step in range(start + 1, self.total_steps + 1):
                t0 = time.monotonic()
                stats = self.optimizer_step([next(data)[1] for _ in range(o.grad_accum)])
                temperature = anneal_temperature(self.fuser.projectors, step)
                wall = time.monotonic() - t0
                done_here += 1
                per_step = (time.monotonic() - t_run) / done_here
                record = {
                    "step": step,
                    "loss": stats["loss"],
                    "lr": stats["lr"],
                    "gate_temperature": temperature,
                    "gate_logits": gate_logits(self.fuser.projectors),
                    "grad_norm": stats["grad_norm"],
                    "tokens": stats["tokens"],
                    "tokens_per_s": stats["tokens"] / max(wall, 1e-9),
                    "peak_memory_bytes": peak_memory_bytes(self.device),
                    "wall_s": wall,
                    "elapsed_s": time.monotonic() - t_run,
                    "eta_s": per_step * (self.total_steps - step),
                    **stats.get("extra", {}),  # objective-specific terms (qc2c.train.kd: each loss term, top-1)
                }
                if not math.isfinite(stats["loss"]):
                    raise FloatingPointError(f"step {step}: loss is {stats['loss']} (not finite); lower train.optim.lr")
                at_checkpoint = step % save_steps == 0 or step == self.total_steps
                if at_checkpoint:
                    record["eval_loss"] = self.evaluate()
                self.diagnostics.append(record)
                result.losses.append(stats["loss"])
                result.steps = step
                bar.update(record)
                if on_step is not None:
                    on_step(step, record)
                if at_checkpoint:
                    self.save(step, stats["loss"])
                if should_stop is not None and should_stop() and step < self.total_steps:
                    if not at_checkpoint:  # stopping between checkpoints: save this step so nothing is lost
                        self.save(step, stats["loss"])
                    raise TrainingStopped(step)
        finally:
            bar.close()
        self.fuser.projectors.eval()
        ckpt.save_final(self.out, self.fuser.projectors, self.fuser.layer_map, self.init_args)
        return result
