"""Real-geometry models with random weights, for timing without the hub: `geom:qwen3-0.6b`, `geom:qwen2.5-0.5b`,
`geom:llama3.2-1b`.

Each is the published model's config (qc2c/models/geom_configs/<name>.json: layers, widths, heads, head_dim,
vocabulary, RoPE, tied embeddings, exactly as on the hub) built as the real transformers class with seeded
random weights on the device it is asked for (deterministic per device and seed; never written to disk). No
tokenizer: prompts are random token ids of realistic lengths (`prompt_lengths`: OBQA/ARC-C items in C2C's
prompt are about 150-250 tokens), so speed, memory and the codec's bytes are those of the real pair, while every
prediction is meaningless. A `geom` fuser is C2C's projector (the published recipe's sizes, `PROJECTOR`) per
receiver layer, `last_aligned` layer map, random weights with open gates.

For CPU tests and dry runs, `n_layers` and `vocab_size` shrink a model and are recorded as overrides.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qc2c.eval.batching import PromptBatch, left_pad
from qc2c.eval.prompts import RenderedPrompt
from qc2c.fuser.checkpoint import Fuser
from qc2c.fuser.layer_map import last_aligned
from qc2c.fuser.preflight import kv_shape
from qc2c.fuser.projector import C2CProjector
from qc2c.models.pair import Pair

PREFIX = "geom:"
CONFIG_DIR = Path(__file__).with_name("geom_configs")
# C2C's projector for Qwen3-0.6B <- Qwen2.5-0.5B (its published training recipe); the defaults of qc2c's config
PROJECTOR = {
    "hidden_dim": 1024,
    "intermediate_dim": 1024,
    "num_layers": 3,
    "dropout": 0.1,
    "initial_temperature": 1.0,
    "final_temperature": 0.001,
    "anneal_steps": 1929,
}
RESPONSE_TOKENS = 5  # the logits protocol's response section ("The correct answer is" in C2C's prompt)


class UnknownGeometry(ValueError):
    """A `geom:` reference that names no config in qc2c/models/geom_configs/."""


def names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def is_geom_ref(ref: object) -> bool:
    return isinstance(ref, str) and ref.startswith(PREFIX)


def _name(ref: str) -> str:
    name = ref.removeprefix(PREFIX)
    if name not in names():
        known = ", ".join(PREFIX + n for n in names())
        raise UnknownGeometry(f"unknown geometry {ref!r} (known: {known})")
    return name


def published_config(ref: str) -> dict[str, Any]:
    """The config file's fields (without its `_source` note)."""
    data = json.loads((CONFIG_DIR / f"{_name(ref)}.json").read_text())
    return {k: v for k, v in data.items() if not k.startswith("_")}


def geom_config(ref: str, *, n_layers: int | None = None, vocab_size: int | None = None):
    """The transformers config of `ref` (`n_layers`, `vocab_size`: reduced copies for CPU tests and dry runs)."""
    from transformers import AutoConfig

    fields = published_config(ref)
    model_type = fields.pop("model_type")
    if n_layers is not None:
        fields["num_hidden_layers"] = n_layers
        fields["max_window_layers"] = min(fields.get("max_window_layers", n_layers), n_layers)
    if vocab_size is not None:
        fields["vocab_size"] = vocab_size
        for key in ("bos_token_id", "eos_token_id"):
            ids = fields.get(key)
            fields[key] = [i % vocab_size for i in ids] if isinstance(ids, list) else ids % vocab_size
    return AutoConfig.for_model(model_type, **fields)


def build_model(
    ref: str,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    seed: int = 0,
    n_layers: int | None = None,
    vocab_size: int | None = None,
    attn_implementation: str = "sdpa",
) -> nn.Module:
    """The model of `ref` with seeded random weights (transformers' own init) on `device`, in eval mode."""
    from transformers import AutoModelForCausalLM

    config = geom_config(ref, n_layers=n_layers, vocab_size=vocab_size)
    device = torch.device(device)
    with _seeded(device, seed), device:
        try:
            model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn_implementation)
        except TypeError:  # transformers < 4.56 names it torch_dtype (a bare GPU machine may have an older one)
            model = AutoModelForCausalLM.from_config(config, torch_dtype=dtype, attn_implementation=attn_implementation)
    return model.eval()


def _seeded(device: torch.device, seed: int):
    devices = [device.index or 0] if device.type == "cuda" else []
    ctx = torch.random.fork_rng(devices=devices, device_type="cuda" if devices else "cpu")

    class _Seed:
        def __enter__(self):
            ctx.__enter__()
            torch.manual_seed(seed)

        def __exit__(self, *exc):
            return ctx.__exit__(*exc)

    return _Seed()


def load_geom_pair(
    receiver: str,
    sharer: str,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    n_layers: int | None = None,
    vocab_size: int | None = None,
) -> Pair:
    """Both models (seeds 0 and 1); tokenizers are None: `geom` prompts are token ids (`prompt_batch`)."""
    shared = dict(dtype=dtype, device=device, n_layers=n_layers, vocab_size=vocab_size)
    return Pair(
        receiver=build_model(receiver, seed=0, **shared),
        sharer=build_model(sharer, seed=1, **shared),
        receiver_tokenizer=None,
        sharer_tokenizer=None,
        receiver_ref=receiver,
        sharer_ref=sharer,
        receiver_path=CONFIG_DIR / f"{_name(receiver)}.json",
        sharer_path=CONFIG_DIR / f"{_name(sharer)}.json",
    )


def geom_fuser(pair: Pair, *, dtype: torch.dtype, device: str | torch.device, seed: int = 2) -> Fuser:
    """C2C projectors (`PROJECTOR` sizes) for every receiver layer of `pair`, random weights, gates open."""
    n_r, r_heads, r_dim = kv_shape(pair.receiver.config)
    n_s, s_heads, s_dim = kv_shape(pair.sharer.config)
    args = {"source_dim": s_dim, "target_dim": r_dim, "source_num_heads": s_heads, "target_num_heads": r_heads}
    device = torch.device(device)
    with _seeded(device, seed), device:
        projectors = nn.ModuleList(C2CProjector(**args, dtype=torch.float32, **PROJECTOR) for _ in range(n_r))
        with torch.no_grad():
            for pname, p in projectors.named_parameters():
                if pname.endswith("gate_logit"):
                    p.fill_(1.0)
    projectors.to(dtype=dtype).eval()
    layer_map = last_aligned(n_r, n_s)
    recipe = {
        "model": {"base_model": pair.receiver_ref, "teacher_model": pair.sharer_ref, "mapping": "last_aligned"},
        "_note": "random projectors at real geometry (qc2c.models.geom); not trained",
    }
    init_args = [{**args, "dtype": dtype, **PROJECTOR}] * n_r
    return Fuser(
        projectors, layer_map, {t: t for t in range(n_r)}, recipe, init_args, CONFIG_DIR, f"geom-random-{seed}",
        source=f"{pair.receiver_ref}+{pair.sharer_ref}",
    )  # fmt: skip


def prompt_lengths(n: int, *, mean: int = 200, spread: float = 0.25, seed: int = 0) -> list[int]:
    """`n` prompt lengths drawn uniformly in mean·(1 ± spread), seeded."""
    gen = torch.Generator().manual_seed(seed)
    low, high = int(mean * (1 - spread)), int(mean * (1 + spread))
    return torch.randint(low, high + 1, (n,), generator=gen).tolist()


def prompt_batch(
    lengths: list[int], *, vocab_size: int, seed: int = 0, device: str | torch.device = "cpu", pad_id: int = 0
) -> PromptBatch:
    """A left-padded logits-protocol batch of random ids with these lengths (the last `RESPONSE_TOKENS` of each
    prompt form the unfused response section, the same ids in every row, as a real prompt's)."""
    gen = torch.Generator().manual_seed(seed)
    response = torch.randint(1, vocab_size, (RESPONSE_TOKENS,), generator=gen).tolist()
    prompts = []
    for length in lengths:
        body = torch.randint(1, vocab_size, (max(1, length - RESPONSE_TOKENS),), generator=gen).tolist()
        prompts.append(RenderedPrompt(body, response, ""))
    return left_pad(prompts, pad_id, protocol="logits").to(device)
