"""Per-step training diagnostics: diagnostics.jsonl (one fsync'd JSON line per optimizer step) + progress.

Each line: step, loss, lr, gate_temperature, gate_logits {key: [per projector], value: [...]}, grad_norm
{gate, weight (the per-token weight branch), other, total} (before clipping), tokens, tokens_per_s, peak_memory_bytes (CUDA max allocated,
or the process's peak RSS on CPU), wall_s (this step), elapsed_s, eta_s. No external tracker.
On resume the file is cut back to the checkpoint's step, so the curve has no duplicated or orphan steps.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qc2c.train.schedule import GROUPS


def norm_group_of(name: str) -> str:
    """gate | weight | other for the logged norms. The optimizer keeps the reference's name test for "weight"
    (`key_weight` / `value_weight`, qc2c.train.schedule), which no C2CProjector parameter matches, so its
    weight group is empty and was logged as 0.0; C2CProjector's per-token weight branch is `*_scalar_*`."""
    if "gate" in name:
        return "gate"
    if "scalar" in name or "key_weight" in name or "value_weight" in name:
        return "weight"
    return "other"


def grad_norms(projectors: nn.Module) -> dict[str, float]:
    """L2 norm of the gradients per parameter group (gate, weight, other) and in total (call before clipping)."""
    sq = dict.fromkeys(GROUPS, 0.0)
    for name, p in projectors.named_parameters():
        if p.requires_grad and p.grad is not None:
            sq[norm_group_of(name)] += float(p.grad.detach().float().pow(2).sum())
    return {**{g: v**0.5 for g, v in sq.items()}, "total": sum(sq.values()) ** 0.5}


def gate_logits(projectors: nn.ModuleList) -> dict[str, list[float]]:
    return {w: [float(getattr(p, f"{w}_gate_logit").detach()) for p in projectors] for w in ("key", "value")}


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


class DiagnosticsLog:
    """Appends step records to `path`; `truncate_after(step)` drops lines of steps > step (resume)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def truncate_after(self, step: int) -> None:
        if not self.path.is_file():
            return
        keep = [ln for ln in self.path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text("".join(f"{ln}\n" for ln in keep))
        os.replace(tmp, self.path)

    def append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        return [json.loads(ln) for ln in self.path.read_text().splitlines() if ln.strip()]


class Progress:
    """A rich progress bar with ETA on a terminal; one log line per `every` steps otherwise."""

    def __init__(self, total: int, start: int, *, enabled: bool = True, every: int = 10) -> None:
        self.total, self.every, self.bar, self.task = total, every, None, None
        self.enabled = enabled
        if enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("train"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task("train", total=total, completed=start, info="")

    def update(self, record: dict[str, Any]) -> None:
        info = f"loss {record['loss']:.4f} lr {record['lr']:.2e} T {record['gate_temperature']:.3g}"
        if self.bar is not None:
            self.bar.update(self.task, completed=record["step"], info=info)
        elif self.enabled and (record["step"] % self.every == 0 or record["step"] == self.total):
            eta = record.get("eta_s")
            eta_txt = f" eta {eta:.0f}s" if eta is not None else ""
            print(f"train step {record['step']}/{self.total}: {info}{eta_txt}", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
