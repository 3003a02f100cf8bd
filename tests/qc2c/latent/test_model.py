# python -m pytest tests/qc2c/latent/test_model.py -q
from __future__ import annotations

import pytest
import torch

from qc2c.latent.config import LatentConfig
from qc2c.latent.data import decoder_tokens, latent_items, source_ids
from qc2c.latent.decode import Prefix, answer_logits, forward_rows, greedy_answers
from qc2c.latent.losses import kd_loss, masked_ce, objectives, prefix_for
from qc2c.latent.model import DecoderGeometry, LatentWire, latent_dropout, model_key

CFG = LatentConfig(latent_len=4, d_z=16, encoder_heads=2, deep_prefix=True, deep_prefix_len=3, gist=True)


@pytest.fixture(scope="module")
def wire(decoders):
    torch.manual_seed(0)
    geos = {k: DecoderGeometry.of(m) for k, (m, _) in decoders.items()}
    return LatentWire(CFG, geos, len(decoders["demo_receiver"][1]))


def encode(wire, decoders, items):
    ids, mask = source_ids(decoders["demo_receiver"][1], [it.source for it in items])
    return wire.encoder(ids, mask)


def test_every_part_has_the_documented_shape(wire, decoders):
    items = latent_items("demo", "train")[:3]
    z = encode(wire, decoders, items)
    assert z.shape == (3, CFG.latent_len, CFG.d_z)
    for key, (model, _) in decoders.items():
        g = wire.geometries[key]
        prefix = prefix_for(wire, key, z)
        assert prefix.embeds.shape == (3, CFG.latent_len, g.hidden)
        assert len(prefix.deep) == g.n_layers
        assert prefix.deep[0][0].shape == (3, g.n_kv_heads, CFG.deep_prefix_len, g.head_dim)
        logits = wire.gist[key](prefix.embeds, model.get_output_embeddings().weight)
        assert logits.shape[0] == 3 and logits.shape[-1] == g.vocab
    assert set(wire.parts()) == {
        "encoder",
        *(f"{p}_{k}" for p in ("adapter", "deep_prefix", "gist") for k in decoders),
    }


def test_model_key_names_files_safely():
    assert model_key("demo:sharer_llama") == "demo_sharer_llama"
    assert model_key("Qwen/Qwen3-0.6B") == "Qwen_Qwen3_0_6B"


def test_right_padding_leaves_each_rows_logits_as_alone(wire, decoders):
    model, tok = decoders["demo_sharer_llama"]
    items = latent_items("demo", "train")[:2]
    z = encode(wire, decoders, items)
    prefix = prefix_for(wire, "demo_sharer_llama", z)
    rows = [
        tok("red blue green", add_special_tokens=False)["input_ids"],
        tok("cat", add_special_tokens=False)["input_ids"],
    ]
    both = forward_rows(model, prefix, rows, 0)
    alone = forward_rows(model, prefix.rows([1]), rows[1:], 0)
    n = prefix.n_embeds + len(rows[1])
    torch.testing.assert_close(both[1, :n], alone[0, :n], atol=1e-4, rtol=1e-4)


def test_cross_entropy_helpers_on_a_toy_case():
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]], [[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]])
    targets = torch.tensor([[0, 1], [2, 0]])
    mask = torch.tensor([[True, True], [True, False]])
    from qc2c.latent.decode import AnswerLogits

    got = AnswerLogits(logits, targets, mask)
    ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
    assert torch.isclose(masked_ce(got), ce[[0, 1, 2]].mean())
    assert torch.isclose(masked_ce(got, 1), ce[[0, 2]].mean())
    assert float(kd_loss(got, got)) == pytest.approx(0.0, abs=1e-7)
    other = AnswerLogits(logits.flip(-1), targets, mask)
    assert float(kd_loss(got, other)) > 0.1


def test_objectives_are_finite_and_reach_every_trainable_part(wire, decoders):
    items = latent_items("demo", "train")[:4]
    z = encode(wire, decoders, items)
    total = 0
    for key, (model, tok) in decoders.items():
        got = objectives(wire, key, model, z, decoder_tokens(tok, items), k=2)
        assert set(got) == {"tf", "first", "kCE", "KD", "gist", "first_acc"}
        assert all(torch.isfinite(torch.as_tensor(v)) for v in got.values())
        total = total + got["tf"] + got["gist"]
    wire.zero_grad()
    total.backward()
    for name, part in wire.parts().items():
        grads = [p.grad for p in part.parameters() if p.grad is not None]
        assert grads and any(float(g.abs().sum()) > 0 for g in grads), name


def test_latent_dropout_keeps_about_the_asked_fraction():
    z = torch.ones(200, 10, 3)
    kept = latent_dropout(z, 0.7, torch.Generator().manual_seed(0))[..., 0].mean()
    assert 0.65 < float(kept) < 0.75
    assert latent_dropout(z, 1.0) is z


def test_greedy_stops_at_eos_and_matches_teacher_forcing_argmax(wire, decoders):
    model, tok = decoders["demo_receiver"]
    items = latent_items("demo", "train")[:3]
    tokens = decoder_tokens(tok, items)
    prefix = Prefix()
    prompts = [s + tokens.anchor for s in tokens.sources]
    out = greedy_answers(model, prefix, prompts, max_new_tokens=3, eos=tokens.eos, pad=tokens.pad)
    got = answer_logits(model, prefix, prompts, [[t] for t in [o[0] if o else tokens.eos for o in out]], tokens.pad)
    assert [o[:1] for o in out] == [[int(x)] if int(x) != tokens.eos else [] for x in got.logits[:, 0].argmax(-1)]
    assert all(tokens.eos not in o for o in out)
