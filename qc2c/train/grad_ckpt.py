"""Gradient checkpointing (non-reentrant) of a frozen LM's decoder layers while it reads a KV cache.

In C2C training the receiver is frozen but runs in the autograd graph (the loss reaches the projectors through
the fused cache), so autograd keeps every decoder layer's activations of the last section. With
`train.gradient_checkpointing` each layer keeps only its input and recomputes the rest in backward, one layer
at a time (`torch.utils.checkpoint.checkpoint(..., use_reentrant=False)`): peak memory falls by roughly the
activations of all layers but one, for one more forward of the last section. The sharer runs under no_grad
and keeps no activations, so there is nothing to checkpoint there.

Why not transformers' own `gradient_checkpointing_enable()`: it only acts in train mode and drops the KV
cache (`use_cache=False`), while the last section must attend to the fused prefix cache. A layer appends its
new keys and values to that cache; the recomputation in backward would append them a second time, so each
wrapped layer first cuts its cache layer back to the length the original forward saw. The wrapping is
scoped by a context manager (the layers' own `forward` is restored on exit): nothing is patched at import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layers of a transformers causal LM (`model.model.layers`)."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise TypeError(f"{type(model).__name__}: no model.layers to checkpoint (a transformers causal LM expected)")
    return layers


def _wrap(layer: nn.Module, forward: Callable[..., Any]) -> Callable[..., Any]:
    def checkpointed(hidden_states: Tensor, *args: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled():
            return forward(hidden_states, *args, **kwargs)
        cache = kwargs.get("past_key_values")
        idx = getattr(getattr(layer, "self_attn", None), "layer_idx", None)
        cache_layer = cache.layers[idx] if cache is not None and idx is not None else None
        seen = cache_layer.keys.shape[-2] if cache_layer is not None and cache_layer.is_initialized else 0
        calls = [0]

        def run(h: Tensor) -> Any:
            if calls[0] and cache_layer is not None:  # the recomputation: the cache as the first call saw it
                cache_layer.keys = cache_layer.keys[..., :seen, :]
                cache_layer.values = cache_layer.values[..., :seen, :]
            calls[0] += 1
            return forward(h, *args, **kwargs)

        return checkpoint(run, hidden_states, use_reentrant=False)

    return checkpointed


@contextmanager
def checkpointed_layers(model: nn.Module, enabled: bool = True) -> Iterator[None]:
    """Within the block, every decoder layer of `model` runs under non-reentrant checkpointing when autograd
    records (under no_grad a layer runs as it is)."""
    if not enabled:
        yield
        return
    layers = list(decoder_layers(model))
    for layer in layers:
        layer.forward = _wrap(layer, layer.forward)  # an instance attribute: nn.Module.__call__ reads it
    try:
        yield
    finally:
        for layer in layers:
            layer.__dict__.pop("forward", None)
