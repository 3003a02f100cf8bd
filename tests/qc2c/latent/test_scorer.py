# python -m pytest tests/qc2c/latent/test_scorer.py -q
from __future__ import annotations

import pytest

from qc2c.config import OptimConfig
from qc2c.eval.datasets import load_mc
from qc2c.latent.config import LatentConfig
from qc2c.latent.data import latent_items
from qc2c.latent.scorer import exact_match, load_evaluator, token_f1
from qc2c.latent.train import LatentTrainer


@pytest.fixture(scope="module")
def final(decoders, tmp_path_factory):
    out = tmp_path_factory.mktemp("wire")
    cfg = LatentConfig(latent_len=4, d_z=16, encoder_heads=2, deep_prefix=True)
    optim = OptimConfig(lr=3e-3, max_steps=2, batch_size=4, warmup_ratio=0.0)
    trainer = LatentTrainer(cfg, optim, decoders, out, items=latent_items("demo", "train")[:8], validation=[])
    trainer.refs = {"demo_receiver": "demo:receiver", "demo_sharer_llama": "demo:sharer_llama"}
    trainer.train()
    return out / "final"


@pytest.mark.parametrize("setting", ["latent", "latent_int8", "latent_int4", "latent_text", "latent_placebo"])
def test_every_latent_setting_scores_demo_items_with_bytes_and_qa_metrics(decoders, final, setting):
    model, tok = decoders["demo_sharer_llama"]
    evaluator = load_evaluator(final, "demo:sharer_llama", group_size=None, max_new_tokens=3)
    scorer = evaluator.scorer(setting, model, tok, device="cpu", seed=0)
    items = load_mc("demo", split="test").items[:3] + load_mc("demo", split="test").items[-2:]
    scorer.use_dataset(items)
    rows = scorer.score_rows(items)
    for item, row in zip(items, rows):
        assert row.error is None
        assert row.pred in item.labels and sum(row.option_probs.values()) == pytest.approx(1.0)
        assert {"em", "f1", "first_ok", "nll_per_token", "latent_answer"} <= set(row.message)
        assert row.message["nbytes"] == sum(row.message["nbytes_breakdown"].values())
    if setting == "latent_text":
        assert rows[0].message["nbytes"] == len(latent_items("demo", "test")[0].source.encode())
    else:
        cfg = evaluator.loaded.wire.cfg
        bits = {"latent": 16, "latent_int8": 8, "latent_int4": 4, "latent_placebo": 16}[setting]
        assert rows[0].message["nbytes_breakdown"]["payload"] == cfg.latent_len * cfg.d_z * bits // 8
    if setting == "latent_placebo":
        assert all(r.message["partner_id"] != it.id for r, it in zip(rows, items))


def test_a_wire_for_another_decoder_is_refused(decoders, final):
    evaluator = load_evaluator(final, "demo:sharer", group_size=None, max_new_tokens=3)
    with pytest.raises(ValueError, match="no adapter for demo:sharer"):
        evaluator.scorer("latent", decoders["demo_receiver"][0], decoders["demo_receiver"][1], device="cpu", seed=0)


def test_short_answer_metrics():
    assert exact_match(" The Red.", "red") and not exact_match("red cat", "red")
    assert token_f1("red cat", "red") == pytest.approx(2 / 3)
    assert token_f1("blue", "red") == 0.0
