"""Per-layer precision: a map written per RECEIVER layer, resolved to what each SHARER layer is sent at.

Manifest `kv.precision = {default, overrides: [{layers, scheme}], last_fp16}` (qc2c.config.PrecisionConfig);
`layers` is an inclusive range "24-27" or a strictly increasing list [24, 25] (`parse_layer_range`). Later
overrides win over earlier ones, `last_fp16: N` puts the last N receiver layers at fp16 after them. Through the layer map (receiver layer -> sharer layer;
with 28 receiver and 24 sharer layers, receiver layers 0–4 all read sharer layer 0) each sharer layer is
sent ONCE, at the most precise scheme (highest `rank`) any receiver layer reading it asks for. Sharer
layers no receiver layer reads are not sent at all. Results report both views.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from qc2c.config import PrecisionConfig
from qc2c.kv.quant import SCHEMES

MAX_LAYER = 4095  # the highest layer index a range may name (a range is expanded into a tuple)


@dataclass(frozen=True)
class PrecisionPlan:
    """receiver: {receiver layer: scheme asked}; sharer: {sharer layer: scheme sent} (read layers only)."""

    receiver: dict[int, str]
    sharer: dict[int, str]

    def groups(self) -> dict[str, list[int]]:
        """{scheme: sorted sharer layers sent with it} — one message segment each."""
        out: dict[str, list[int]] = {}
        for layer, scheme in sorted(self.sharer.items()):
            out.setdefault(scheme, []).append(layer)
        return out


def parse_layer_range(value: object) -> tuple[int, ...]:
    """ "24-27" (inclusive) or a strictly increasing list of receiver layer indices → sorted tuple (the
    manifest's `layers`; whether they exist is checked against the model, in `resolve_precision`)."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", value)
        if not match:
            raise ValueError(f"layer range {value!r} is malformed (allowed: 'A-B', inclusive, or a list)")
        first, last = int(match[1]), int(match[2])
        if last > MAX_LAYER:
            raise ValueError(f"layer range {value!r} goes past layer {MAX_LAYER}")
        if first > last:
            raise ValueError(f"layer range {value!r} is reversed (write '{last}-{first}')")
        return tuple(range(first, last + 1))
    if isinstance(value, list | tuple) and value:
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_LAYER for v in value):
            raise ValueError(f"layer list {list(value)} must hold non-negative integers up to {MAX_LAYER}")
        if any(b <= a for a, b in zip(value, value[1:])):
            raise ValueError(f"layer list {list(value)} must be strictly increasing, without repeats")
        return tuple(value)
    raise ValueError(f"layers must be 'A-B' (inclusive) or a non-empty list of layer indices, not {value!r}")


def _in_range(layers: tuple[int, ...], n_layers: int, where: str) -> tuple[int, ...]:
    bad = [i for i in layers if not 0 <= i < n_layers]
    if bad:
        raise ValueError(f"{where}: receiver layers {bad} out of range (the receiver has layers 0-{n_layers - 1})")
    return layers


def resolve_precision(
    precision: PrecisionConfig | None, *, scheme: str, layer_map: Mapping[int, int], n_receiver_layers: int
) -> PrecisionPlan:
    """Receiver-layer precision map -> PrecisionPlan. `scheme` (kv.quant.scheme) is the default default."""
    precision = precision or PrecisionConfig()
    asked = dict.fromkeys(range(n_receiver_layers), precision.default or scheme)
    for i, override in enumerate(precision.overrides):
        for layer in _in_range(override.layers, n_receiver_layers, f"kv.precision.overrides[{i}].layers"):
            asked[layer] = override.scheme
    last = precision.last_fp16 or 0
    if not 0 <= last <= n_receiver_layers:
        raise ValueError(f"kv.precision.last_fp16: {last} is not in 0..{n_receiver_layers}")
    for layer in range(n_receiver_layers - last, n_receiver_layers):
        asked[layer] = "fp16"
    sent: dict[int, str] = {}
    for t, s in layer_map.items():
        if t not in asked:
            raise ValueError(f"layer_map: receiver layer {t} is out of range (0-{n_receiver_layers - 1})")
        if s not in sent or SCHEMES.get(asked[t]).rank > SCHEMES.get(sent[s]).rank:
            sent[s] = asked[t]
    return PrecisionPlan(receiver=asked, sharer=dict(sorted(sent.items())))


def ineffective_overrides(
    precision: PrecisionConfig | None, *, scheme: str, layer_map: Mapping[int, int], n_receiver_layers: int
) -> list[str]:
    """One line per precision override some of whose receiver layers save nothing: their sharer layer is also
    read by a receiver layer asking for a more precise scheme, so it is sent at that one (the plan above).
    Worth a warning at plan time: the manifest reads as a cheaper message than the one sent."""
    plan = resolve_precision(precision, scheme=scheme, layer_map=layer_map, n_receiver_layers=n_receiver_layers)
    lines = []
    for i, override in enumerate(precision.overrides if precision else ()):
        wasted = {
            t: plan.sharer[layer_map[t]]
            for t in override.layers
            if t in layer_map and plan.sharer[layer_map[t]] != override.scheme and plan.receiver[t] == override.scheme
        }
        if wasted:
            sent = ", ".join(f"{t}->{layer_map[t]}:{s}" for t, s in sorted(wasted.items()))
            lines.append(
                f"kv.precision.overrides.{i}: {override.scheme} saves nothing on receiver layers "
                f"{sorted(wasted)}: their sharer layers are read by other receiver layers at a higher precision "
                f"and sent once, at that one (receiver->sharer:sent {sent})"
            )
    return lines
