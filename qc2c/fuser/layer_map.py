"""Receiver layer -> sharer layer maps for models of different depth (docs/c2c.md §1.3).

`last_aligned` is what every published recipe uses: align the last layers and walk towards the front,
clamping at the sharer's first layer. `k_nearest` places both stacks on [0, 1] and takes the nearest
sharer layers (no recipe uses it; kept for ablations). Every receiver layer t gets projector index t.
"""

from __future__ import annotations

from collections.abc import Callable

from qc2c.plugins import Plugins

LAYER_MAPS: Plugins[Callable[[int, int], dict[int, int]]] = Plugins("layer map")


@LAYER_MAPS.register("last_aligned")
def last_aligned(n_receiver: int, n_sharer: int) -> dict[int, int]:
    """t -> clamp(t + (S - T), 0, S - 1). E.g. 28 <- 24: t = 0..4 -> 0, then t -> t - 4."""
    _check(n_receiver, n_sharer)
    offset = n_sharer - n_receiver
    return {t: min(max(t + offset, 0), n_sharer - 1) for t in range(n_receiver)}


def k_nearest_layers(n_receiver: int, n_sharer: int, k: int = 1) -> dict[int, list[int]]:
    """The k sharer layers nearest to each receiver layer on a common [0, 1] depth axis (ties: lower index)."""
    _check(n_receiver, n_sharer)
    if not 1 <= k <= n_sharer:
        raise ValueError(f"k_nearest: k must be in 1..{n_sharer}, got {k}")

    def depth(i: int, n: int) -> float:
        return i / (n - 1) if n > 1 else 0.0

    out = {}
    for t in range(n_receiver):
        order = sorted(range(n_sharer), key=lambda s: (abs(depth(s, n_sharer) - depth(t, n_receiver)), s))
        out[t] = sorted(order[:k])
    return out


@LAYER_MAPS.register("k_nearest")
def k_nearest(n_receiver: int, n_sharer: int) -> dict[int, int]:
    """k_nearest with K=1 as a plain layer map."""
    return {t: layers[0] for t, layers in k_nearest_layers(n_receiver, n_sharer, 1).items()}


def _check(n_receiver: int, n_sharer: int) -> None:
    if n_receiver < 1 or n_sharer < 1:
        raise ValueError(f"layer counts must be >= 1 (receiver {n_receiver}, sharer {n_sharer})")
