"""Optimizer, learning-rate schedule and gate-temperature annealing of C2C training (docs/c2c.md §6).

AdamW over the projector parameters only, in the reference's 3 groups (names containing "gate",
"key_weight"/"value_weight", everything else), all with the same lr and weight decay: the grouping is kept
so per-group gradient norms can be logged and so optimizer state dicts line up with the reference's.
The schedule is transformers' `get_scheduler` (linear / cosine / constant, the latter with warmup).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

GROUPS = ("gate", "weight", "other")


def group_of(name: str) -> str:
    if "gate" in name:
        return "gate"
    if "key_weight" in name or "value_weight" in name:
        return "weight"
    return "other"


def param_groups(projectors: nn.Module) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """{group: [(name, parameter)]} over trainable parameters, in a fixed order."""
    out: dict[str, list[tuple[str, nn.Parameter]]] = {g: [] for g in GROUPS}
    for name, p in projectors.named_parameters():
        if p.requires_grad:
            out[group_of(name)].append((name, p))
    return out


def build_optimizer(projectors: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    groups = [
        {"params": [p for _, p in params], "lr": lr, "weight_decay": weight_decay, "name": g}
        for g, params in param_groups(projectors).items()
        if params
    ]
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)


def warmup_steps(total_steps: int, warmup_ratio: float) -> int:
    return math.ceil(total_steps * warmup_ratio)


def build_scheduler(
    optimizer: torch.optim.Optimizer, name: str, total_steps: int, warmup_ratio: float
) -> torch.optim.lr_scheduler.LRScheduler:
    """transformers.get_scheduler; "constant" with a warmup ratio > 0 becomes constant_with_warmup."""
    from transformers import get_scheduler

    warm = warmup_steps(total_steps, warmup_ratio)
    hf_name = "constant_with_warmup" if name == "constant" and warm > 0 else name
    return get_scheduler(hf_name, optimizer, num_warmup_steps=warm, num_training_steps=total_steps)


def total_optimizer_steps(n_examples: int, batch_size: int, grad_accum: int, epochs: int, max_steps: int | None) -> int:
    """Optimizer steps of the run: ceil(micro-batches per epoch / grad_accum) * epochs, or max_steps."""
    if max_steps is not None:
        return max_steps
    per_epoch = math.ceil(n_examples / batch_size)
    return max(1, math.ceil(per_epoch * epochs / grad_accum))


def anneal_temperature(projectors: Iterable[nn.Module], step: int) -> float:
    """Set every projector's Gumbel temperature for optimizer step `step` (reference: after each step)."""
    temperature = float("nan")
    for projector in projectors:
        projector.update_temperature(step)
        temperature = float(projector.gate_temperature)
    return temperature
