"""The latent wire's trainable parts: encoder, per-decoder adapters, deep prefixes and gist heads.

    wire = encoder(source bytes)                 (B, M, d_z)   what is sent (qc2c.latent.codec packs it)
    adapter_<model>(wire)                        (B, M, hidden) fed to the frozen decoder as inputs_embeds
    deep_prefix_<model>(wire)                    per layer (K, V) of (B, H_kv, P, head_dim): past_key_values
    gist_<model>(adapter(wire))                  (B, G, vocab) logits of the source's first G decoder tokens

The encoder is a small transformer over the source's tokens in the *first* decoder's tokenizer (the
sender's; the wire itself is tokenizer-free, so it serves decoders with other vocabularies), read out by M
learned queries (a Perceiver-style resampler). Bytes were tried first: a 2-layer byte encoder had not
learnt to find the value word after 200 steps, where whole-word tokens make it one attention hop. Each adapter ends
in a learned scale initialised to the RMS of its decoder's token embeddings, so the wire starts at the
magnitude the decoder's first layer expects. Decoders are frozen HF models and are not part of this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from qc2c.latent.config import LatentConfig

MAX_SOURCE = 256  # source tokens read
GIST_TOKENS = 32  # source tokens a gist head reconstructs


def model_key(ref: str) -> str:
    """A decoder's name in checkpoint files: its reference with every other character made `_`
    (`demo:sharer_llama` -> `demo_sharer_llama`)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", ref).strip("_") or "model"


@dataclass(frozen=True)
class DecoderGeometry:
    """What the adapters, deep prefixes and gist heads need to know of a frozen decoder."""

    hidden: int
    n_layers: int
    n_kv_heads: int
    head_dim: int
    vocab: int
    embed_rms: float

    @classmethod
    def of(cls, model: nn.Module) -> DecoderGeometry:
        c = model.config
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        emb = model.get_input_embeddings().weight.detach().float()
        return cls(
            hidden=c.hidden_size,
            n_layers=c.num_hidden_layers,
            n_kv_heads=getattr(c, "num_key_value_heads", None) or c.num_attention_heads,
            head_dim=head_dim,
            vocab=c.vocab_size,
            embed_rms=float(emb.pow(2).mean().sqrt()),
        )

    def as_json(self) -> dict:
        return dict(vars(self))


class Encoder(nn.Module):
    """Source token ids (B, T) (+1; 0 = padding) -> wire (B, M, d_z): token embeddings + positions, a
    transformer encoder, then M learned queries attending over its output."""

    def __init__(self, cfg: LatentConfig, vocab: int) -> None:
        super().__init__()
        d = cfg.d_z
        self.embed = nn.Embedding(vocab + 1, d, padding_idx=0)
        self.pos = nn.Parameter(torch.randn(MAX_SOURCE, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, cfg.encoder_heads, 4 * d, dropout=0.0, batch_first=True)
        self.body = nn.TransformerEncoder(layer, cfg.encoder_layers, enable_nested_tensor=False)
        self.queries = nn.Parameter(torch.randn(cfg.latent_len, d) * 0.02)
        self.read = nn.MultiheadAttention(d, cfg.encoder_heads, batch_first=True)
        self.norm = nn.LayerNorm(d)

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        x = self.embed(ids) + self.pos[: ids.shape[1]]
        h = self.body(x, src_key_padding_mask=~mask)
        q = self.queries.unsqueeze(0).expand(ids.shape[0], -1, -1)
        out, _ = self.read(q, h, h, key_padding_mask=~mask)
        return self.norm(out + q)


class Adapter(nn.Module):
    """wire (B, M, d_z) -> (B, M, hidden): linear or a 2-layer MLP, times a learned scale."""

    def __init__(self, cfg: LatentConfig, geo: DecoderGeometry) -> None:
        super().__init__()
        if cfg.adapter == "mlp":
            self.net = nn.Sequential(
                nn.Linear(cfg.d_z, 2 * geo.hidden), nn.GELU(), nn.Linear(2 * geo.hidden, geo.hidden)
            )
        else:
            self.net = nn.Linear(cfg.d_z, geo.hidden)
        self.norm = nn.LayerNorm(geo.hidden, elementwise_affine=False)
        self.scale = nn.Parameter(torch.tensor(float(geo.embed_rms)))

    def forward(self, wire: Tensor) -> Tensor:
        return self.norm(self.net(wire)) * self.scale


class DeepPrefix(nn.Module):
    """wire (B, M, d_z) -> per-layer (K, V), each (B, H_kv, P, head_dim): the M vectors are mixed into P
    positions, then one linear map gives every layer's keys and values (small init: the prefix starts quiet)."""

    def __init__(self, cfg: LatentConfig, geo: DecoderGeometry) -> None:
        super().__init__()
        self.geo, self.length = geo, cfg.deep_prefix_len
        self.mix = nn.Linear(cfg.latent_len, cfg.deep_prefix_len)
        self.kv = nn.Linear(cfg.d_z, geo.n_layers * 2 * geo.n_kv_heads * geo.head_dim)
        nn.init.normal_(self.kv.weight, std=0.02)
        nn.init.zeros_(self.kv.bias)

    def forward(self, wire: Tensor) -> list[tuple[Tensor, Tensor]]:
        g = self.geo
        mixed = self.mix(wire.transpose(1, 2)).transpose(1, 2)  # (B, P, d_z)
        kv = self.kv(mixed).view(wire.shape[0], self.length, g.n_layers, 2, g.n_kv_heads, g.head_dim)
        kv = kv.permute(2, 3, 0, 4, 1, 5)  # (L, 2, B, H, P, D)
        return [(kv[layer, 0], kv[layer, 1]) for layer in range(g.n_layers)]


class GistHead(nn.Module):
    """adapted wire (B, M, hidden) -> logits (B, GIST_TOKENS, vocab) of the source's decoder tokens: learned
    position queries attend over the wire; the decoder's own (frozen) output embedding gives the logits."""

    def __init__(self, cfg: LatentConfig, geo: DecoderGeometry) -> None:
        super().__init__()
        heads = 4 if geo.hidden % 4 == 0 else 1
        self.queries = nn.Parameter(torch.randn(GIST_TOKENS, geo.hidden) * 0.02)
        self.attend = nn.MultiheadAttention(geo.hidden, heads, batch_first=True)
        self.norm = nn.LayerNorm(geo.hidden)

    def forward(self, adapted: Tensor, output_embedding: Tensor) -> Tensor:
        q = self.queries.unsqueeze(0).expand(adapted.shape[0], -1, -1)
        h, _ = self.attend(q, adapted, adapted)
        return self.norm(h + q) @ output_embedding.t()


class LatentWire(nn.Module):
    """Every trainable part, keyed by decoder (`model_key`): encoder, adapter_<m>, deep_prefix_<m>, gist_<m>."""

    def __init__(self, cfg: LatentConfig, geometries: dict[str, DecoderGeometry], encoder_vocab: int) -> None:
        super().__init__()
        self.cfg, self.geometries, self.encoder_vocab = cfg, dict(geometries), encoder_vocab
        self.encoder = Encoder(cfg, encoder_vocab)
        self.adapters = nn.ModuleDict({k: Adapter(cfg, g) for k, g in geometries.items()})
        self.deep = nn.ModuleDict({k: DeepPrefix(cfg, g) for k, g in geometries.items()} if cfg.deep_prefix else {})
        self.gist = nn.ModuleDict({k: GistHead(cfg, g) for k, g in geometries.items()} if cfg.gist else {})

    def parts(self) -> dict[str, nn.Module]:
        """The checkpoint files' names -> modules (`encoder`, `adapter_<m>`, `deep_prefix_<m>`, `gist_<m>`)."""
        out: dict[str, nn.Module] = {"encoder": self.encoder}
        for prefix, group in (("adapter", self.adapters), ("deep_prefix", self.deep), ("gist", self.gist)):
            out.update({f"{prefix}_{k}": m for k, m in group.items()})
        return out


def latent_dropout(wire: Tensor, keep: float, generator: torch.Generator | None = None) -> Tensor:
    """Zero each wire vector with probability 1 - keep (training only; no rescaling: at test time every
    vector is present, and the decoder must not depend on any single one)."""
    if keep >= 1.0:
        return wire
    mask = torch.rand(wire.shape[:2], generator=generator, device=wire.device) < keep
    return wire * mask.unsqueeze(-1).to(wire.dtype)
