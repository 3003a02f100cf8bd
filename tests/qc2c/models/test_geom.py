"""`geom:` models: the published configs' shapes with seeded random weights, and tokenizer-free prompts."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from qc2c.fuser.preflight import kv_shape
from qc2c.models import geom

# parameters of the published checkpoints (tied embeddings), KV geometry (layers, KV heads, head_dim)
PUBLISHED = {
    "geom:qwen3-0.6b": (596_049_920, (28, 8, 128)),
    "geom:qwen2.5-0.5b": (494_032_768, (24, 2, 64)),
    "geom:llama3.2-1b": (1_235_814_400, (16, 8, 64)),
}


@pytest.mark.parametrize("ref", sorted(PUBLISHED))
def test_configs_have_the_published_shapes(ref: str) -> None:
    config = geom.geom_config(ref)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED[ref][0]
    assert kv_shape(config) == PUBLISHED[ref][1]


def test_unknown_geometry_names_the_known_ones() -> None:
    with pytest.raises(geom.UnknownGeometry, match="geom:qwen3-0.6b"):
        geom.geom_config("geom:qwen9")


def test_reduced_models_are_seeded_and_real_classes() -> None:
    a = geom.build_model("geom:qwen2.5-0.5b", n_layers=1, vocab_size=512, seed=3)
    b = geom.build_model("geom:qwen2.5-0.5b", n_layers=1, vocab_size=512, seed=3)
    c = geom.build_model("geom:qwen2.5-0.5b", n_layers=1, vocab_size=512, seed=4)
    assert type(a).__name__ == "Qwen2ForCausalLM" and a.config.hidden_size == 896
    sa, sb, sc = (m.state_dict()["model.layers.0.mlp.up_proj.weight"] for m in (a, b, c))
    assert torch.equal(sa, sb) and not torch.equal(sa, sc)


def test_pair_fuser_and_prompts_run_a_c2c_prefill() -> None:
    from qc2c.eval.prefill import C2CPrefill

    pair = geom.load_geom_pair("geom:qwen3-0.6b", "geom:qwen2.5-0.5b", n_layers=2, vocab_size=256)
    fuser = geom.geom_fuser(pair, dtype=torch.float32, device="cpu")
    assert fuser.layer_map == {0: 0, 1: 1} and len(fuser.projectors) == 2
    lengths = geom.prompt_lengths(3, mean=20)
    assert all(15 <= n <= 25 for n in lengths) and lengths == geom.prompt_lengths(3, mean=20)
    batch = geom.prompt_batch(lengths, vocab_size=256)
    assert batch.input_ids.shape == (3, max(lengths)) and batch.fused_end == max(lengths) - geom.RESPONSE_TOKENS
    assert bool((batch.input_ids[:, -geom.RESPONSE_TOKENS :] == batch.input_ids[0, -geom.RESPONSE_TOKENS :]).all())
    out = C2CPrefill(pair.receiver, pair.sharer, fuser, None)(batch)
    assert out.logits_last.shape == (3, 256) and torch.isfinite(out.logits_last).all()


def test_manifest_loading_refuses_geom_refs_with_the_reason() -> None:
    from qc2c.models.pair import ModelNotAvailable, resolve_model_dir

    with pytest.raises(ModelNotAvailable, match="no tokenizer.*qc2c.bench gpu"):
        resolve_model_dir("geom:qwen3-0.6b")
