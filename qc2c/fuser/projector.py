"""The C2C projector with the published math and parameter names (docs/c2c.md §2).

One projector per receiver layer maps the sharer's KV of a token (all its KV heads flattened) together with
the receiver's own KV of that token into a residual update of the receiver's KV:

    out = target + gate * sigmoid(scalar_head(...)) * proj_out(...)

The parameter names are those of upstream `rosetta/model/projector.py::C2CProjector` so that the published
`projector_{i}.pt` files load strictly. RMSNorm goes through `F.rms_norm` (the op `nn.RMSNorm` calls), which
keeps bf16 results bit-identical to the reference on a given torch build.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

KV = tuple[Tensor, Tensor]


class RMSNormWeight(nn.Module):
    """RMSNorm with a learnable weight named `weight` (state_dict key `...norm.weight`), eps 1e-6."""

    def __init__(self, dim: int, eps: float = 1e-6, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


class FFNBlock(nn.Module):
    """x + Dropout(W2(GELU(W1(RMSNorm(x))))), W1/W2 without bias, exact-erf GELU ("StandardFFNLayer")."""

    def __init__(self, dim: int, intermediate: int, dropout: float, dtype: torch.dtype) -> None:
        super().__init__()
        self.norm = RMSNormWeight(dim, dtype=dtype)
        self.w1 = nn.Linear(dim, intermediate, bias=False, dtype=dtype)
        self.w2 = nn.Linear(intermediate, dim, bias=False, dtype=dtype)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.dropout(self.w2(F.gelu(self.w1(self.norm(x)))))


class RegularMLP(nn.Module):
    """A stack of `n_blocks` residual FFN blocks (state_dict keys `blocks.{j}.norm|w1|w2.weight`)."""

    def __init__(self, dim: int, intermediate: int, n_blocks: int, dropout: float, dtype: torch.dtype) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(FFNBlock(dim, intermediate, dropout, dtype) for _ in range(n_blocks))

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class C2CProjector(nn.Module):
    """Per-layer KV projector: (sharer (K, V) (B,Hs,N,Ds), receiver (K, V) (B,Ht,N,Dt)) -> fused (B,Ht,N,Dt).

    `source_dim`/`target_dim` are head dims (Ds, Dt); the flattened widths are Hs*Ds and Ht*Dt.
    Inference uses the hard gate `logit > 0` as a float32 (1,1,1,1) tensor, so with a bf16 projector the
    residual sum is computed in float32 and rounded once when it is written into a bf16 cache.
    """

    def __init__(
        self,
        source_dim: int,
        target_dim: int,
        source_num_heads: int = 1,
        target_num_heads: int = 1,
        intermediate_dim: int = 1024,
        hidden_dim: int = 1024,
        num_layers: int = 3,
        dropout: float = 0.1,
        initial_temperature: float = 1.0,
        final_temperature: float = 0.001,
        anneal_steps: int = 1929,
        dtype: torch.dtype = torch.float32,
        zero_init: bool = False,
    ) -> None:
        super().__init__()
        if num_layers < 3:
            raise ValueError(f"C2CProjector: num_layers must be >= 3, got {num_layers}")
        self.source_dim, self.target_dim = source_dim, target_dim
        self.source_num_heads, self.target_num_heads = source_num_heads, target_num_heads
        self.initial_temperature, self.final_temperature = initial_temperature, final_temperature
        self.anneal_steps = anneal_steps
        d_in = source_dim * source_num_heads + target_dim * target_num_heads
        d_out = target_dim * target_num_heads
        h = hidden_dim
        for x in ("key", "value"):
            setattr(self, f"{x}_in", nn.Linear(d_in, h, bias=True, dtype=dtype))
            setattr(self, f"{x}_mlp1", RegularMLP(h, intermediate_dim, 1, dropout, dtype))
            setattr(self, f"{x}_proj_mlp2", RegularMLP(h, intermediate_dim, num_layers - 2, dropout, dtype))
            setattr(self, f"{x}_proj_out", nn.Linear(h, d_out, bias=True, dtype=dtype))
            setattr(self, f"{x}_scalar_mlp2", RegularMLP(h, h, 1, dropout, dtype))
            setattr(self, f"{x}_scalar_head", nn.Linear(h, target_num_heads, bias=True, dtype=dtype))
            setattr(self, f"{x}_gate_logit", nn.Parameter(torch.tensor(0.0, dtype=dtype)))
            if zero_init:
                nn.init.zeros_(getattr(self, f"{x}_proj_out").weight)
                nn.init.zeros_(getattr(self, f"{x}_proj_out").bias)
        self.register_buffer("gate_temperature", torch.tensor(initial_temperature, dtype=dtype))

    def update_temperature(self, step: int) -> None:
        """T = T0 * (T1/T0) ** min(step/anneal_steps, 1); called after every optimizer step in training."""
        frac = min(step / max(self.anneal_steps, 1), 1.0)
        t = self.initial_temperature * math.pow(self.final_temperature / self.initial_temperature, frac)
        self.gate_temperature.fill_(t)

    def gate(self, which: str, shape: tuple[int, int, int]) -> Tensor:
        """Hard 0/1 gate (1,1,1,1) float32 in eval; Gumbel-sigmoid (B,Ht,N,1) per (row, head, token) in training."""
        logit = getattr(self, f"{which}_gate_logit")
        if self.training:
            u = torch.rand((*shape, 1), device=logit.device, dtype=logit.dtype)
            g = -torch.log(-torch.log(u + 1e-20) + 1e-20)
            return torch.sigmoid((logit + g) / self.gate_temperature)
        return (logit > 0).to(torch.float32).reshape(1, 1, 1, 1)

    def _one(self, which: str, source: Tensor, target: Tensor) -> Tensor:
        b, ht, n, dt = target.shape
        s = source.transpose(1, 2).reshape(b, n, -1)
        t = target.transpose(1, 2).reshape(b, n, -1)
        z = getattr(self, f"{which}_in")(torch.cat([s, t], dim=-1))
        z = getattr(self, f"{which}_mlp1")(z)
        proj = getattr(self, f"{which}_proj_out")(getattr(self, f"{which}_proj_mlp2")(z))
        proj = proj.reshape(b, n, ht, dt).transpose(1, 2)
        w = torch.sigmoid(getattr(self, f"{which}_scalar_head")(getattr(self, f"{which}_scalar_mlp2")(z)))
        w = w.transpose(1, 2).unsqueeze(-1)  # (B, Ht, N, 1)
        return target + self.gate(which, (b, ht, n)) * w * proj

    def forward(self, source_kv: KV, target_kv: KV) -> KV:
        """Returns the fused (K, V); float32 when the gate is hard (eval), the caller rounds into its cache."""
        return self._one("key", source_kv[0], target_kv[0]), self._one("value", source_kv[1], target_kv[1])
