"""Axes and group shapes shared by every scaled scheme (one scale, and zero point, per group).

The codec hands schemes the selected sharer KV of one or more rows with all layers stacked:
x: (R, L, H, n, D) = rows × sharer layers × KV heads × kept tokens × head_dim. A group is:

- ``token``: `group_size` consecutive channels of one token (one scale per token per group);
- ``channel``: `group_size` consecutive tokens of one channel (KIVI, arXiv:2402.02750: keys per channel);
- ``head``: one scale per layer × head over all its tokens and channels;
- ``layer``: one scale per layer; ``tensor``: one scale per row (over every layer of the segment).

`group_size` applies to the token and channel axes (None = the whole axis); head/layer/tensor groups are
always whole. A ragged last group (axis length not a multiple of `group_size`) is padded by repeating the
axis' last element, which changes no group statistic (min, max, absmax), and the padding is cut off again
before packing: it is never sent.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

AXES = ("token", "channel", "head", "layer", "tensor")
Shape = tuple[int, int, int, int]  # one row: (L, H, n, D)


@dataclass(frozen=True)
class Grouping:
    """Where scales live: `axis` (see module doc) and `group_size` (None = whole axis)."""

    axis: str
    group_size: int | None = None

    def __post_init__(self) -> None:
        if self.axis not in AXES:
            raise ValueError(f"axis: unknown axis {self.axis!r} (allowed: {', '.join(AXES)})")
        if self.group_size is not None and (not isinstance(self.group_size, int) or self.group_size < 1):
            raise ValueError(f"group_size: must be a positive integer or null, got {self.group_size!r}")

    def _group(self, length: int) -> int:
        return min(self.group_size or length, length)

    def n_groups(self, shape: Shape) -> int:
        """Closed-form number of scale groups for one row of shape (L, H, n, D)."""
        n_layers, n_heads, n_tokens, head_dim = shape
        if n_layers * n_heads * n_tokens * head_dim == 0:
            return 0
        if self.axis == "token":
            return n_layers * n_heads * n_tokens * math.ceil(head_dim / self._group(head_dim))
        if self.axis == "channel":
            return n_layers * n_heads * math.ceil(n_tokens / self._group(n_tokens)) * head_dim
        if self.axis == "head":
            return n_layers * n_heads
        if self.axis == "layer":
            return n_layers
        return 1

    def view(self, x: Tensor) -> tuple[Tensor, int, Callable[[Tensor], Tensor]]:
        """Grouped view of x (R, L, H, n, D) -> (xg, reduce_dim, unview).

        Reducing xg over `reduce_dim` (keepdim) gives the per-group statistics, which broadcast against
        xg; `unview(yg)` maps an xg-shaped result back to (R, L, H, n, D), dropping the padding.
        """
        r, n_layers, n_heads, n_tokens, head_dim = x.shape
        if self.axis == "token":
            g = self._group(head_dim)
            xp = _pad_edge(x, -1, g)
            padded = xp.shape[-1]
            xg = xp.view(r, n_layers, n_heads, n_tokens, padded // g, g)
            return xg, -1, lambda y: _cut(y.reshape(r, n_layers, n_heads, n_tokens, padded), -1, head_dim)
        if self.axis == "channel":
            g = self._group(n_tokens)
            xp = _pad_edge(x, -2, g)
            padded = xp.shape[-2]
            xg = xp.view(r, n_layers, n_heads, padded // g, g, head_dim)
            return xg, -2, lambda y: _cut(y.reshape(r, n_layers, n_heads, padded, head_dim), -2, n_tokens)
        keep = {"head": 3, "layer": 2, "tensor": 1}[self.axis]
        xg = x.reshape(*x.shape[:keep], -1)
        return xg, -1, lambda y: y.reshape(r, n_layers, n_heads, n_tokens, head_dim)


def _pad_edge(x: Tensor, dim: int, group: int) -> Tensor:
    """Pad `dim` up to a multiple of `group` by repeating its last element (no copy when already aligned)."""
    length = x.shape[dim]
    extra = -length % group
    if extra == 0:
        return x
    tail = x.narrow(dim, length - 1, 1)
    sizes = list(x.shape)
    sizes[dim] = extra
    return torch.cat([x, tail.expand(sizes)], dim=dim)


def _cut(y: Tensor, dim: int, length: int) -> Tensor:
    return y if y.shape[dim] == length else y.narrow(dim, 0, length).contiguous()
