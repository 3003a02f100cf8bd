"""Message layouts: which tokens of a row go at which scheme, planned by a precision map or by a byte budget.

A `LayoutPlanner` splits a row's selected tokens into token sets, each sent at one scheme, and names the
message's segments (scheme, sharer layers, token set). Two planners implement it:

- `PrecisionLayout` (no `kv.budget`): one token set, the selection; one segment per scheme of the precision
  plan, each over the sharer layers the plan sends at that scheme.
- `BudgetLayout` (`kv.budget`): the allocator splits the selection over the budget's levels, best-ranked
  tokens at the most precise one; one segment per non-empty level, over every sent sharer layer. A packed
  message over the budget is shrunk by `drop_worst` until it fits.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass

from torch import Tensor

from qc2c.kv.budget import Allocator
from qc2c.kv.precision import PrecisionPlan
from qc2c.kv.quant import Scheme
from qc2c.kv.selection import Selection
from qc2c.kv.wire import Message, closed_form_nbytes

TokenSet = tuple[str, Tensor]  # (scheme name, "" in plan mode; the row's positions, sorted ascending)
Shape = tuple[int, int, int]  # (n_layers, n_heads, head_dim) of the sharer cache
SchemePairs = Mapping[str, tuple[Scheme, Scheme]]  # scheme name -> (key scheme, value scheme)


@dataclass(frozen=True)
class Layout:
    """One row's message shape: token counts per set and segments (scheme, sharer layers, token set)."""

    set_counts: tuple[int, ...]
    segments: tuple[tuple[str, tuple[int, ...], int], ...]


def closed_form(layout: Layout, n_tokens: int, shape: Shape, schemes: SchemePairs) -> dict[str, int]:
    """Bytes of a message with this layout by arithmetic alone, by part (header, indices, payload, scales)."""
    n_layers, n_heads, head_dim = shape
    segments = [(*schemes[name], len(layers), s) for name, layers, s in layout.segments]
    return closed_form_nbytes(
        n_tokens=n_tokens,
        n_layers=n_layers,
        n_heads=n_heads,
        head_dim=head_dim,
        set_counts=list(layout.set_counts),
        segments=segments,
    )


def drop_worst(sets: list[TokenSet], ranked: Tensor) -> list[TokenSet]:
    """The row's token sets without its worst-ranked sent token (`ranked`: its selection, best first); sets
    left empty are dropped."""
    worst = ranked[sum(idx.numel() for _, idx in sets) - 1]
    kept = [(name, idx[idx != worst]) for name, idx in sets]
    return [(name, idx) for name, idx in kept if idx.numel()]


class LayoutPlanner(ABC):
    """How a codec lays out each row's message."""

    @abstractmethod
    def row_sets(self, sel: Selection, r: int, n_tokens: int, shape: Shape) -> list[TokenSet]:
        """Row r's token sets (`n_tokens`: its fused tokens); empty sets are left out."""

    @abstractmethod
    def layout(self, sets: list[TokenSet]) -> Layout:
        """The layout of a row whose token sets are `sets`."""

    @abstractmethod
    def scheme_names(self) -> tuple[str, ...]:
        """Every scheme a message may be sent at."""

    def fits(self, message: Message) -> bool:
        """Whether the packed message may be sent as it is (else the codec drops its worst token)."""
        return True


@dataclass(frozen=True)
class PrecisionLayout(LayoutPlanner):
    """The selection, every sharer layer at the scheme the precision plan sends it at."""

    plan: PrecisionPlan

    def row_sets(self, sel: Selection, r: int, n_tokens: int, shape: Shape) -> list[TokenSet]:
        return [("", sel.indices[r])]

    def layout(self, sets: list[TokenSet]) -> Layout:
        counts = tuple(idx.numel() for _, idx in sets)
        return Layout(counts, tuple((name, tuple(layers), 0) for name, layers in self.plan.groups().items()))

    def scheme_names(self) -> tuple[str, ...]:
        return tuple(self.plan.groups())


@dataclass(frozen=True)
class BudgetLayout(LayoutPlanner):
    """The selection split over `levels` (ascending precision) by the allocator so the message fits."""

    layers: tuple[int, ...]  # the sent sharer layers
    levels: tuple[str, ...]  # the budget's candidates other than drop, ascending precision
    allocator: Allocator
    bytes_per_sample: int
    schemes: SchemePairs

    def row_sets(self, sel: Selection, r: int, n_tokens: int, shape: Shape) -> list[TokenSet]:
        def cost(counts: tuple[int, ...]) -> int:
            return sum(closed_form(self._levels_layout(counts), n_tokens, shape, self.schemes).values())

        counts = self.allocator.allocate(sel.n_sent[r], len(self.levels), cost, self.bytes_per_sample)
        sets, start = [], 0
        for name, count in reversed(list(zip(self.levels, counts))):
            sets.append((name, sel.ranked[r][start : start + count].sort().values))
            start += count
        return [(name, idx) for name, idx in sets[::-1] if idx.numel()]

    def layout(self, sets: list[TokenSet]) -> Layout:
        counts = tuple(idx.numel() for _, idx in sets)
        return Layout(counts, tuple((name, self.layers, i) for i, (name, _) in enumerate(sets)))

    def _levels_layout(self, counts: tuple[int, ...]) -> Layout:
        live = [(name, c) for name, c in zip(self.levels, counts) if c]
        return Layout(tuple(c for _, c in live), tuple((n, self.layers, i) for i, (n, _) in enumerate(live)))

    def scheme_names(self) -> tuple[str, ...]:
        return self.levels

    def fits(self, message: Message) -> bool:
        return message.nbytes <= self.bytes_per_sample
