"""Quantization-aware training: the manifest's codec (selection + quantization + precision map / budget) in
the training forward, exactly as evaluation runs it.

Where gradients go: the sharer runs under no_grad and its KV is *upstream* of the projector, so the codec
(select -> quantize -> dequantize) acts on a constant. The projector is trained on exactly what the
receiver reconstructs from the message, and its gradients are exact; no straight-through estimator is
needed, because no quantized tensor lies downstream of a trainable parameter. (An STE would only be needed
if the *fused* output, which depends on the projector, were quantized, e.g. a compressed receiver cache; the
codec never does that.) What does change is the forward: the projector sees quantization noise and only the
sent tokens are fused (sparse fuse), so the gradients differ from uncompressed training.

A receiver-aware selector (`delta`) may return projections it computed for ranking (`Transmitted.projected`);
those are dropped here so that the fuse step recomputes them in the autograd graph.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from qc2c.config import KVConfig
from qc2c.fuser.seam import MessagePath, SectionKV, Transmitted


@dataclass
class TrainingMessagePath:
    """A codec (MessagePath) for training: same transmit, projections left to the fuse step (see module)."""

    codec: MessagePath

    @property
    def needs_sharer_attention(self) -> bool:
        return bool(getattr(self.codec, "needs_sharer_attention", False))

    def transmit(self, section: SectionKV) -> Transmitted:
        sent = self.codec.transmit(section)
        return replace(sent, projected=None)


def build_qat_path(
    kv: KVConfig, *, layer_map: dict[int, int], n_sharer_layers: int, n_receiver_layers: int
) -> TrainingMessagePath:
    """The manifest's `kv` settings as a training message path."""
    from qc2c.kv.codec import build_codec

    codec = build_codec(kv, layer_map=layer_map, n_sharer_layers=n_sharer_layers, n_receiver_layers=n_receiver_layers)
    return TrainingMessagePath(codec)
