"""Deterministic tiny HF models, built offline: the embedded default pair and the test zoo.

A reference ``tiny:<name>`` names a real transformers class (Qwen3ForCausalLM, Qwen2ForCausalLM,
LlamaForCausalLM) at the transformers model-tester scale, the same shapes as the C2C conformance fixtures
(tests/data/conformance/c2c/README.md): a receiver and two sharers, one sharing the receiver's tokenizer and one
with its own, so both the same-tokenizer and the token-alignment paths of C2C run on CPU in seconds.

Build once, then load the normal way: the model and tokenizer are saved in the HF layout into
``$QC2C_TINY_CACHE`` (default ``~/.cache/qc2c/tiny``) under ``<name>-<hash of spec>`` and read back with
``from_pretrained``, so callers exercise the real loading path. The same spec gives byte-identical files:
weights come from a ``torch.Generator`` seeded per parameter name, not from transformers' initialisers.
The folder appears by an atomic rename of a finished temporary build (`qc2c.atomic.build_folder`), so a
crashed or concurrent build never leaves a half-written model behind.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, PretrainedConfig, Qwen2Config, Qwen3Config
from transformers.utils import logging as hf_logging

from qc2c.atomic import build_folder
from qc2c.models.tiny_tokenizers import TOKENIZERS, build_tokenizer, corpus_sha256

# Bump when the build procedure changes the files a spec produces (it is part of the cache key).
BUILD_VERSION = 1
PREFIX = "tiny:"
_CONFIGS: dict[str, type[PretrainedConfig]] = {"qwen3": Qwen3Config, "qwen2": Qwen2Config, "llama": LlamaConfig}


@dataclass(frozen=True)
class TinySpec:
    """Shape of one tiny model. `arch` picks the transformers config class; `tokenizer` a TOKENIZERS key."""

    arch: str
    tokenizer: str
    n_layers: int
    hidden_size: int
    intermediate_size: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    seed: int
    init_std: float = 0.08  # large enough that random logits are far from uniform (as the conformance models)
    max_position_embeddings: int = 4096


TINY_MODELS: dict[str, TinySpec] = {
    # receiver: Qwen3 (q/k RMSNorm, explicit head_dim)
    "qwen3": TinySpec("qwen3", "qwen", n_layers=4, hidden_size=64, intermediate_size=128, n_heads=4, n_kv_heads=2,
                      head_dim=16, seed=1),
    # sharer with the receiver's tokenizer: Qwen2 (q/k/v biases, head_dim = hidden / heads)
    "qwen2": TinySpec("qwen2", "qwen", n_layers=3, hidden_size=48, intermediate_size=96, n_heads=4, n_kv_heads=2,
                      head_dim=12, seed=2),
    # sharer with its own tokenizer: Llama-3 style, one KV head, deeper than the receiver
    "llama": TinySpec("llama", "llama", n_layers=6, hidden_size=40, intermediate_size=80, n_heads=4, n_kv_heads=1,
                      head_dim=10, seed=3),
}  # fmt: skip


class UnknownTinyModel(ValueError):
    """A `tiny:` reference that names no model in TINY_MODELS."""


def is_tiny_ref(ref: str) -> bool:
    return isinstance(ref, str) and ref.startswith(PREFIX)


def cache_root() -> Path:
    env = os.environ.get("QC2C_TINY_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "qc2c" / "tiny"


def spec_hash(name: str) -> str:
    """12 hex digits over everything that determines the files: spec, tokenizer spec, corpus, build version."""
    spec = _spec(name)
    payload = {
        "build": BUILD_VERSION,
        "name": name,
        "model": asdict(spec),
        "tokenizer": asdict(TOKENIZERS[spec.tokenizer]),
        "corpus": corpus_sha256(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def resolve_tiny(ref: str) -> Path:
    """`"tiny:qwen3"` → its HF-layout folder in the cache, building it on first use."""
    if not is_tiny_ref(ref):
        raise UnknownTinyModel(f"not a tiny model reference: {ref!r} (expected 'tiny:<name>')")
    return build_tiny(ref[len(PREFIX) :], cache_root())


def build_tiny(name: str, root: Path) -> Path:
    """Build `name` into `root/<name>-<hash>` unless it is there already; returns the folder."""
    target = Path(root) / f"{name}-{spec_hash(name)}"
    if not target.is_dir():
        with build_folder(target, replace=False) as tmp:  # a concurrent build may win the rename: kept
            _write(name, tmp)
    return target


def _spec(name: str) -> TinySpec:
    try:
        return TINY_MODELS[name]
    except KeyError:
        known = ", ".join(PREFIX + n for n in sorted(TINY_MODELS))
        raise UnknownTinyModel(f"unknown tiny model {PREFIX + name!r} (known: {known})") from None


def _write(name: str, folder: Path) -> None:
    spec = _spec(name)
    tokenizer = build_tokenizer(TOKENIZERS[spec.tokenizer])
    config = hf_config(spec, tokenizer)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    _init_weights(model, spec)
    save_quietly(model, tokenizer, folder)


def save_quietly(model: torch.nn.Module, tokenizer, folder: Path) -> None:
    """save_pretrained without the "Writing model shards" bar (noise in build and test logs)."""
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(folder)
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
    tokenizer.save_pretrained(folder)


def hf_config(spec: TinySpec, tokenizer) -> PretrainedConfig:
    """The transformers config of `spec` for `tokenizer` (vocabulary size and special ids from it)."""
    kwargs = dict(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.n_layers,
        num_attention_heads=spec.n_heads,
        num_key_value_heads=spec.n_kv_heads,
        head_dim=spec.head_dim,
        max_position_embeddings=spec.max_position_embeddings,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        initializer_range=spec.init_std,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return _CONFIGS[spec.arch](**kwargs)


def _init_weights(model: torch.nn.Module, spec: TinySpec) -> None:
    """Overwrite every parameter from a generator seeded by (spec.seed, parameter name).

    Norm weights are 1 (their HF init); everything else, biases included, is N(0, init_std²). Seeding per name
    keeps values independent of parameter order and of transformers' own init code.
    """
    with torch.no_grad():
        for pname, param in sorted(model.named_parameters()):
            if "norm" in pname:
                param.fill_(1.0)
                continue
            seed = int.from_bytes(hashlib.sha256(f"{spec.seed}:{pname}".encode()).digest()[:8], "little") >> 1
            gen = torch.Generator().manual_seed(seed)
            param.copy_(torch.randn(param.shape, generator=gen, dtype=torch.float32) * spec.init_std)
