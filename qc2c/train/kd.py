"""Fuser training by top-K logit distillation from a KD cache (`train.objective: kd`; the speedrun method).

    trainer = KDTrainer(spec, out_dir, cache_dir=folder)   # a kind: kd_cache run folder (qc2c.kd.format)
    trainer.train()                                      # checkpoints, diagnostics.jsonl, final/ as SFT

The rows of the cache are the training examples (one conversation per row: ids and the fused prefix split),
so no teacher runs during training: each step is the student's fused forward (with `train.qat` the
manifest's codec in the path, e.g. int2 fake-quant), the loss of qc2c.kd.loss over the cached candidates and
a backward. Natural use: teacher = the uncompressed pair (c2c_fp16), student = the same fuser reading the
compressed message, which learns to make the compressed message act like the full one.

Everything else is the SFT trainer's: held-out 1 %, optimizer, schedule, checkpoints, resume (the data order
is a seeded permutation of the rows, so a resumed run sees the same batches). diagnostics.jsonl gains per
step: loss_kl (T²·KL), loss_hard, loss_ce, top1_agreement and kd_positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from qc2c.config import KDConfig
from qc2c.kd.format import KDCache, read_cache
from qc2c.kd.loss import KDWeights, kd_loss
from qc2c.train.data import Example, TrainBatch
from qc2c.train.sft import Trainer, TrainSpec


@dataclass
class KDExample(Example):
    row: int = -1  # the cache row that holds this example's teacher targets


@dataclass
class KDBatch:
    """A student batch (qc2c.train.data.collate) and the teacher's targets on its last-section columns."""

    batch: TrainBatch
    cand_idx: Tensor  # (B, last_len, K + R) int64, teacher's top-1 first
    cand_logits: Tensor  # (B, last_len, K + R) float32, raw
    mask: Tensor  # (B, last_len) bool: the column carries a target
    next_ids: Tensor  # (B, last_len) the data's next token (-100: none), for the CE term

    @property
    def n_tokens(self) -> int:
        return self.batch.n_tokens


class KDTrainer(Trainer):
    """The SFT Trainer with examples and targets from a KD cache and the KD loss (module docstring)."""

    def __init__(self, spec: TrainSpec, out_dir: str | Path, *, cache_dir: str | Path | None = None, **kw: Any) -> None:
        kd = spec.train.kd
        folder = cache_dir or (kd.path if kd is not None else None)
        if folder is None:
            raise ValueError("train.kd: objective kd needs a KD cache (train.kd.path, or from_run through the runner)")
        self.cache: KDCache = read_cache(folder)
        if self.cache.meta["packing"]:
            raise ValueError(
                f"{folder}: packing: the rows are packed blocks; a fuser student needs one conversation per row"
            )
        k = kd or KDConfig()
        self.weights = KDWeights(k.temperature, k.kl_weight, k.hard_weight, k.ce_weight)
        self._terms: list[dict[str, Tensor]] = []
        super().__init__(spec, out_dir, **kw)
        vocab = self.pair.receiver.get_output_embeddings().weight.shape[0]
        if self.cache.meta["vocab_size"] != vocab:
            meta_file = Path(folder) / "meta.json"
            raise ValueError(f"{meta_file}: vocab_size: {self.cache.meta['vocab_size']}, the receiver has {vocab}")
        if not self.pair.same_tokenizer:
            raise ValueError(
                "pair: KD from a cache needs a pair sharing the receiver's tokenizer (pair.alignment none)"
            )

    def _load_examples(self, conversations: Sequence[Any] | None) -> tuple[list[Example], int]:
        t = self.cache.tensors
        out: list[Example] = []
        for r in range(self.cache.n_rows):
            n = int(t["attention_mask"][r].sum())
            ids, split = t["input_ids"][r, :n].tolist(), int(t["fuse_split"][r])
            labels = [-100] * (split + 1) + ids[split + 1 :]
            out.append(KDExample(ids, labels, [i < split for i in range(n)], [1] * n, split, row=r))
        return out, 0

    def recipe(self, params: dict[str, Any]) -> dict[str, Any]:
        out = super().recipe(params)
        kd = self.spec.train.kd
        out["training"]["max_length"] = self.cache.meta["max_length"]
        out["qc2c"]["objective"] = "kd"
        out["qc2c"]["kd"] = {**(asdict(kd) if kd else {}), "cache": str(self.cache.folder)}
        out["qc2c"]["kd"]["cache_content_sha256"] = self.cache.meta.get("content_sha256")
        out["qc2c"]["gradient_checkpointing"] = self.spec.train.gradient_checkpointing
        return out

    def make_batch(self, rows: Sequence[Example]) -> KDBatch:  # type: ignore[override]
        batch = super().make_batch(rows)
        t, width = self.cache.tensors, batch.last_len
        has_rand = "rand_idx" in t
        n_cand = t["topk_idx"].shape[-1] + (t["rand_idx"].shape[-1] if has_rand else 0)
        cand_idx = torch.zeros(len(rows), width, n_cand, dtype=torch.long)
        cand_logits = torch.zeros(len(rows), width, n_cand)
        mask = torch.zeros(len(rows), width, dtype=torch.bool)
        for i, e in enumerate(rows):
            r, a, b = e.row, e.split, len(e.input_ids) - 1  # positions a..b-1 are columns 0..b-a-1
            idx, logits = [t["topk_idx"][r, a:b]], [t["topk_logits"][r, a:b]]
            if has_rand:
                idx.append(t["rand_idx"][r, a:b])
                logits.append(t["rand_logits"][r, a:b])
            cand_idx[i, : b - a] = torch.cat(idx, -1).long()
            cand_logits[i, : b - a] = torch.cat(logits, -1).float()
            mask[i, : b - a] = t["loss_mask"][r, a:b].bool()
        next_ids = torch.cat([batch.labels[:, 1:], torch.full((len(rows), 1), -100)], dim=1)
        return KDBatch(batch, cand_idx, cand_logits, mask, next_ids)

    def kd_terms(self, kb: KDBatch) -> dict[str, Tensor]:
        """The loss terms of qc2c.kd.loss on one batch (the student's forward in its current mode)."""
        d = self.device
        logits = self.student_logits(kb.batch.to(d))
        return kd_loss(logits, kb.cand_idx.to(d), kb.cand_logits.to(d), kb.mask.to(d), self.weights, kb.next_ids.to(d))

    def compute_loss(self, kb: KDBatch) -> Tensor:  # type: ignore[override]
        terms = self.kd_terms(kb)
        self._terms.append(terms)
        return terms["loss"]

    def optimizer_step(self, batches: Sequence[Sequence[Example]]) -> dict[str, Any]:
        self._terms = []
        stats = super().optimizer_step(batches)
        stats["extra"] = summarize_terms(self._terms, self.weights.temperature)
        return stats


def summarize_terms(terms: Sequence[dict[str, Tensor]], temperature: float) -> dict[str, float]:
    """Position-weighted means over the micro-batches of one step (diagnostics.jsonl)."""
    n = [int(t["n_positions"]) for t in terms]
    total = max(sum(n), 1)

    def mean(key: str, scale: float = 1.0) -> float:
        return sum(float(t[key]) * k for t, k in zip(terms, n, strict=True)) * scale / total

    return {
        "loss_kl": mean("kl", temperature * temperature),
        "loss_hard": mean("hard"),
        "loss_ce": mean("ce"),
        "top1_agreement": mean("top1_agreement"),
        "kd_positions": sum(n),
    }
