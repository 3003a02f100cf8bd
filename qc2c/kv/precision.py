"""Per-layer precision: a map written per RECEIVER layer, resolved to what each SHARER layer is sent at.

Manifest `kv.precision = {default, overrides: [{layers, scheme}], last_fp16}`; `layers` is an inclusive
range "24-27", a single index, or a list [24, 25]. Later overrides win over earlier ones, `last_fp16: N`
puts the last N receiver layers at fp16 after them. Through the layer map (receiver layer -> sharer layer;
with 28 receiver and 24 sharer layers, receiver layers 0–4 all read sharer layer 0) each sharer layer is
sent ONCE, at the most precise scheme (highest `rank`) any receiver layer reading it asks for. Sharer
layers no receiver layer reads are not sent at all. Results report both views.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from qc2c.kv.quant import SCHEMES


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


def parse_layers(spec: Any, n_layers: int, where: str) -> list[int]:
    """'24-27' (inclusive) | 5 | '5' | [24, 25] -> sorted receiver layer indices, each in [0, n_layers)."""
    if isinstance(spec, bool):
        raise ValueError(f"{where}: expected a range 'a-b', an index or a list of indices, got {spec!r}")
    if isinstance(spec, int):
        layers = [spec]
    elif isinstance(spec, str):
        text = spec.strip()
        try:
            if "-" in text:
                lo, hi = (int(p) for p in text.split("-", 1))
                if lo > hi:
                    raise ValueError
                layers = list(range(lo, hi + 1))
            else:
                layers = [int(text)]
        except ValueError:
            raise ValueError(f"{where}: {spec!r} is not a range 'a-b' (inclusive, a <= b) or an index") from None
    elif isinstance(spec, (list, tuple)) and all(isinstance(i, int) and not isinstance(i, bool) for i in spec):
        layers = list(spec)
    else:
        raise ValueError(f"{where}: expected a range 'a-b', an index or a list of indices, got {spec!r}")
    bad = [i for i in layers if not 0 <= i < n_layers]
    if bad:
        raise ValueError(f"{where}: receiver layers {bad} out of range (the receiver has layers 0-{n_layers - 1})")
    return sorted(set(layers))


def resolve_precision(
    precision: Mapping[str, Any] | None, *, scheme: str, layer_map: Mapping[int, int], n_receiver_layers: int
) -> PrecisionPlan:
    """Receiver-layer precision map -> PrecisionPlan. `scheme` (kv.quant.scheme) is the default default."""
    precision = precision or {}
    default = precision.get("default") or scheme
    SCHEMES.get(default)
    asked = dict.fromkeys(range(n_receiver_layers), default)
    for i, override in enumerate(precision.get("overrides") or []):
        where = f"kv.precision.overrides[{i}]"
        SCHEMES.get(override["scheme"])
        for layer in parse_layers(override.get("layers"), n_receiver_layers, f"{where}.layers"):
            asked[layer] = override["scheme"]
    last = precision.get("last_fp16") or 0
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
    precision: Mapping[str, Any] | None, *, scheme: str, layer_map: Mapping[int, int], n_receiver_layers: int
) -> list[str]:
    """One line per precision override some of whose receiver layers save nothing: their sharer layer is also
    read by a receiver layer asking for a more precise scheme, so it is sent at that one (the plan above).
    Worth a warning at plan time: the manifest reads as a cheaper message than the one sent."""
    plan = resolve_precision(precision, scheme=scheme, layer_map=layer_map, n_receiver_layers=n_receiver_layers)
    lines = []
    for i, override in enumerate((precision or {}).get("overrides") or []):
        layers = parse_layers(override.get("layers"), n_receiver_layers, f"kv.precision.overrides[{i}].layers")
        wasted = {t: plan.sharer[layer_map[t]] for t in layers if t in layer_map}
        wasted = {
            t: sent
            for t, sent in wasted.items()
            if sent != override["scheme"] and plan.receiver[t] == override["scheme"]
        }
        if wasted:
            sent = ", ".join(f"{t}->{layer_map[t]}:{s}" for t, s in sorted(wasted.items()))
            lines.append(
                f"kv.precision.overrides.{i}: {override['scheme']} saves nothing on receiver layers "
                f"{sorted(wasted)}: their sharer layers are read by other receiver layers at a higher precision "
                f"and sent once, at that one (receiver->sharer:sent {sent})"
            )
    return lines
