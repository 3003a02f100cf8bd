"""Token selection: which of a section's sharer tokens are sent (the `SELECTORS` family).

A selector scores tokens (B, N), higher = keep; the base class turns scores into kept positions, written
once for every member: padding / template positions (fuse_mask False) are never selected, each row sends
`n_tokens_to_send(keep, n_valid, min_tokens)` of its own valid tokens, forced positions (the attention
window) are always kept, ties go to the earlier position (stable sort), and the result is per-row kept
indices sorted ascending. `keep` is the fraction KEPT (kvpress's `compression_ratio` is the fraction removed).
A row's scores depend on its own tokens only, never on the padding its batch adds (a sample selects what it
would select alone; tests/qc2c/kv/test_selector_contract.py checks every member).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from qc2c.config import SelectionConfig
from qc2c.fuser.seam import KV, SectionKV
from qc2c.plugins import Plugins

SELECTORS: Plugins[Selector] = Plugins("token selector")
READS = ("sharer", "projector", "receiver")  # what a selector's scores need, from least to most


def n_tokens_to_send(keep: float, n_valid: int, min_tokens: int) -> int:
    """THE rounding rule: max(min_tokens, round-half-up(keep · n_valid)), capped at n_valid."""
    return min(n_valid, max(min_tokens, math.floor(keep * n_valid + 0.5)))


@dataclass
class SelectionContext:
    """What a selector sees: the section; receiver-aware selectors leave their projections in `projected`."""

    section: SectionKV
    projected: dict[int, KV] | None = None

    @property
    def valid(self) -> Tensor:
        return self.section.fuse_mask.bool()


@dataclass
class Selection:
    """kept: (B, N) bool; indices[r]: that row's kept positions, sorted ascending (int64, on device);
    ranked[r]: the same positions best-first (what a byte budget spends on first)."""

    kept: Tensor
    indices: list[Tensor]
    ranked: list[Tensor]
    n_sent: list[int]
    projected: dict[int, KV] | None = None


@dataclass(frozen=True)
class Selector(ABC):
    """Scores sharer tokens; `select` (written once) turns scores into kept positions.

    `reads` declares what the SENDER must hold to compute the scores: "sharer" (its own KV or attention),
    "projector" (the fuser's projectors applied at the sender, no receiver state), or "receiver" (the
    receiver's cache: an oracle a real sender cannot compute without a round trip; results mark it).
    """

    needs_sharer_attention: ClassVar[bool] = False
    reads: ClassVar[str] = "sharer"

    @abstractmethod
    def scores(self, ctx: SelectionContext) -> Tensor:
        """(B, N) float, higher = keep."""

    def forced(self, ctx: SelectionContext) -> Tensor | None:
        """(B, N) bool positions always kept (valid ones only), or None."""
        return None

    def select(self, ctx: SelectionContext, keep: float, min_tokens: int) -> Selection:
        valid = ctx.valid
        scores = self.scores(ctx).float().masked_fill(~valid, -math.inf)
        forced = self.forced(ctx)
        n_forced = [0] * valid.shape[0]
        if forced is not None:
            forced = forced & valid
            scores = scores.masked_fill(forced, math.inf)
            n_forced = forced.sum(1).tolist()
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices
        n_valid = valid.sum(1).tolist()
        n_sent = [max(n_tokens_to_send(keep, v, min_tokens), f) for v, f in zip(n_valid, n_forced)]
        ranked = [order[r, :n] for r, n in enumerate(n_sent)]
        indices = [idx.sort().values for idx in ranked]
        kept = torch.zeros_like(valid)
        for r, idx in enumerate(indices):
            kept[r, idx] = True
        return Selection(kept, indices, ranked, n_sent, ctx.projected)


def _positions(ctx: SelectionContext) -> Tensor:
    n = ctx.valid.shape[1]
    return torch.arange(n, device=ctx.valid.device, dtype=torch.float32).expand_as(ctx.valid)


def _mean_norm(kvs: list[Tensor]) -> Tensor:
    """Mean over layers and heads of ‖x‖₂ over head_dim: list of (B, H, N, D) -> (B, N)."""
    return torch.stack([x.float().norm(dim=-1).mean(dim=1) for x in kvs]).mean(dim=0)


@SELECTORS.register("all")
@dataclass(frozen=True)
class All(Selector):
    """Every valid token (the codec refuses keep < 1 with this method)."""

    def scores(self, ctx: SelectionContext) -> Tensor:
        return torch.zeros_like(ctx.valid, dtype=torch.float32)


@SELECTORS.register("front")
@dataclass(frozen=True)
class Front(Selector):
    """The first k valid tokens."""

    def scores(self, ctx: SelectionContext) -> Tensor:
        return -_positions(ctx)


@SELECTORS.register("back")
@dataclass(frozen=True)
class Back(Selector):
    """The last k valid tokens (the prior-art M3 setting that held accuracy best)."""

    def scores(self, ctx: SelectionContext) -> Tensor:
        return _positions(ctx)


@SELECTORS.register("random")
@dataclass(frozen=True)
class Random(Selector):
    """Seeded uniform scores over each row's own valid tokens: the same (seed, section_start, valid token
    count) always gives the same choice, whatever else is in the batch."""

    seed: int = 0

    def scores(self, ctx: SelectionContext) -> Tensor:
        valid = ctx.valid.cpu()
        out = torch.zeros(tuple(valid.shape))
        for r, n in enumerate(valid.sum(1).tolist()):
            gen = torch.Generator(device="cpu").manual_seed(self.seed * 1_000_003 + ctx.section.section_start)
            out[r, valid[r]] = torch.rand(n, generator=gen)
        return out.to(ctx.valid.device)


@SELECTORS.register("knorm")
@dataclass(frozen=True)
class KeyNorm(Selector):
    """Key norm (arXiv:2406.11430), mean over sharer layers and heads. kvpress keeps LOW-norm keys."""

    knorm_sign: Literal["low", "high"] = "low"

    def __post_init__(self) -> None:
        if self.knorm_sign not in ("low", "high"):
            raise ValueError(f"knorm_sign: {self.knorm_sign!r} is not allowed (allowed: low, high)")

    def scores(self, ctx: SelectionContext) -> Tensor:
        norm = _mean_norm([k for k, _ in ctx.section.sharer])
        return -norm if self.knorm_sign == "low" else norm


@SELECTORS.register("vnorm")
@dataclass(frozen=True)
class ValueNorm(Selector):
    """‖v‖₂, mean over sharer layers and heads."""

    def scores(self, ctx: SelectionContext) -> Tensor:
        return _mean_norm([v for _, v in ctx.section.sharer])


@SELECTORS.register("attention")
@dataclass(frozen=True)
class Attention(Selector):
    """SnapKV-like (arXiv:2404.14469): attention the sharer's last `window` valid queries pay to each key.

    Averaged over the window, smoothed by an average over the valid keys among the 5 around each key (a
    row's first keys are not averaged with its batch's padding), averaged over heads and sharer layers. Uses
    `section.sharer_attention[l]`: (B, H_q, N, N_total) with the section's keys at columns
    section_start … section_start + N − 1. The window itself is always kept.
    """

    window: int = 8
    needs_sharer_attention: ClassVar[bool] = True

    def _window(self, ctx: SelectionContext) -> Tensor:
        valid = ctx.valid
        from_end = valid.flip(1).cumsum(1).flip(1)  # valid tokens at or after each position
        return valid & (from_end <= self.window)

    def forced(self, ctx: SelectionContext) -> Tensor:
        return self._window(ctx)

    def scores(self, ctx: SelectionContext) -> Tensor:
        attn = ctx.section.sharer_attention
        if not attn:
            raise ValueError("selection.method attention needs the sharer's attention weights (none were given)")
        window = self._window(ctx).float()  # (B, N)
        valid = ctx.valid.float()[:, None]  # (B, 1, N)
        n_near = F.avg_pool1d(valid, kernel_size=5, stride=1, padding=2).clamp_min(1e-6)
        start, n = ctx.section.section_start, window.shape[1]
        per_layer = []
        for a in attn:
            cols = a[..., start : start + n].float()  # (B, H, N_q, N)
            pooled = torch.einsum("bhqk,bq->bhk", cols, window) / window.sum(1).clamp_min(1)[:, None, None]
            smooth = F.avg_pool1d(pooled * valid, kernel_size=5, stride=1, padding=2) / n_near
            per_layer.append(smooth.mean(dim=1))
        return torch.stack(per_layer).mean(dim=0)


@SELECTORS.register("delta")
@dataclass(frozen=True)
class Delta(Selector):
    """Receiver-aware (an ORACLE): ‖project(sharer v) − receiver v‖₂ (mean over receiver layers and heads).

    Tokens whose fused value would change the receiver most are kept. The projections are left in
    `ctx.projected` ({receiver layer: (K, V)}) so the fuse step can reuse them when the message is lossless.
    The score needs the receiver's own cache, which the sender does not have: `delta_sender` is the
    realistic counterpart.
    """

    reads: ClassVar[str] = "receiver"

    def scores(self, ctx: SelectionContext) -> Tensor:
        section = ctx.section
        ctx.projected = {}
        per_layer = []
        for t, s in sorted(section.layer_map.items()):
            proj = section.project(t, section.sharer[s], section.receiver[t])
            ctx.projected[t] = proj
            per_layer.append((proj[1].float() - section.receiver[t][1].float()).norm(dim=-1).mean(dim=1))
        return torch.stack(per_layer).mean(dim=0)


@SELECTORS.register("delta_sender")
@dataclass(frozen=True)
class DeltaSender(Selector):
    """Sender-side `delta`: ‖project(sharer v, 0)‖₂, the value update the projector would add to a receiver
    whose own value is zero (mean over receiver layers and heads).

    The sender applies the fuser's projectors to its own KV; of the receiver it uses only the geometry
    (heads × head_dim, known from the fuser), never its state, so no round trip is needed. It ranks tokens
    by how strongly the projector writes them rather than by how much they would change this receiver.
    """

    reads: ClassVar[str] = "projector"

    def scores(self, ctx: SelectionContext) -> Tensor:
        section = ctx.section
        per_layer = []
        for t, s in sorted(section.layer_map.items()):
            neutral = tuple(torch.zeros_like(x) for x in section.receiver[t])  # shape only, never the values
            _, v = section.project(t, section.sharer[s], neutral)
            per_layer.append(v.float().norm(dim=-1).mean(dim=1))
        return torch.stack(per_layer).mean(dim=0)


def is_oracle(method: str) -> bool:
    """The selector named `method` needs the receiver's state (results and golden rows mark it oracle)."""
    return SELECTORS.get(method).reads == "receiver"


def build_selector(selection: SelectionConfig) -> Selector:
    """The selector named by `selection.method`, given the settings it declares (knorm_sign, window, seed)."""
    cls = SELECTORS.get(selection.method)
    given = {f.name for f in fields(selection)}
    return cls(**{f.name: getattr(selection, f.name) for f in fields(cls) if f.name in given})


__all__ = [
    "READS",
    "SELECTORS",
    "Selection",
    "SelectionContext",
    "Selector",
    "build_selector",
    "is_oracle",
    "n_tokens_to_send",
]
