# python -m pytest tests/qc2c/latent/test_train.py -q
from __future__ import annotations

import pytest
import torch

from qc2c.config import OptimConfig
from qc2c.latent.config import OBJECTIVES, LatentConfig
from qc2c.latent.data import latent_items
from qc2c.latent.train import LatentTrainer, batch_indices, current_k, keep_probability, step_weights
from qc2c.train.sft import TrainingStopped

ITEMS = latent_items("demo", "train")[:24]
VALID = latent_items("demo", "validation")[:6]
OPTIM = OptimConfig(lr=3e-3, max_steps=4, batch_size=4, warmup_ratio=0.0, scheduler="linear")


def make(decoders, out, stage="a", init=None, **kw):
    cfg = LatentConfig(stage=stage, latent_len=4, d_z=16, encoder_heads=2, gist=True, k_end=2, **kw)
    return LatentTrainer(cfg, OPTIM, decoders, out, seed=3, save_steps=2, init_from=init, items=ITEMS, validation=VALID)


def test_diagnostics_has_every_field_on_every_logged_step(decoders, tmp_path):
    trainer = make(decoders, tmp_path / "a")
    trainer.train()
    lines = trainer.log.read()
    assert [r["step"] for r in lines] == [1, 2, 3, 4]
    for r in lines:
        assert set(r["models"]) == set(decoders)
        for losses in r["models"].values():
            assert set(losses) == {*OBJECTIVES, "first_acc"}
            assert 0.0 <= losses["first_acc"] <= 1.0
        assert set(r["grad_norm"]) == {*OBJECTIVES, "total"}
        assert r["grad_norm"]["tf"] > 0 and r["grad_norm"]["gist"] > 0
        assert {"keep_prob", "K", "wall_s", "lr", "loss", "stage", "mode", "elapsed_s"} <= set(r)
    assert [r["mode"] for r in lines] == ["latent", "text", "latent", "text"]
    assert lines[0]["keep_prob"] == pytest.approx(0.7) and lines[-1]["keep_prob"] == pytest.approx(1.0)
    assert [r["K"] for r in lines] == [1, 1, 1, 2]
    final = tmp_path / "a" / "final"
    assert {p.name for p in final.glob("*.pt")} == {f"{n}.pt" for n in trainer.wire.parts()}


def test_stage_b_continues_stage_a_and_adds_a_deep_prefix(decoders, tmp_path):
    make(decoders, tmp_path / "a").train()
    b = make(decoders, tmp_path / "b", stage="b", init=tmp_path / "a" / "final", deep_prefix=True)
    a_enc = torch.load(tmp_path / "a" / "final" / "encoder.pt")
    assert all(torch.equal(v, b.wire.encoder.state_dict()[k]) for k, v in a_enc.items())
    b.train()
    assert all(r["mode"] == "all" for r in b.log.read())
    assert (tmp_path / "b" / "final" / "deep_prefix_demo_receiver.pt").is_file()
    with pytest.raises(ValueError, match="d_z"):
        LatentTrainer(
            LatentConfig(stage="b", latent_len=4, d_z=32, encoder_heads=2),
            OPTIM,
            decoders,
            tmp_path / "c",
            init_from=tmp_path / "a" / "final",
            items=ITEMS,
        )


def test_a_stopped_run_resumes_to_the_uninterrupted_curve(decoders, tmp_path):
    whole = make(decoders, tmp_path / "whole")
    whole.train()
    first = make(decoders, tmp_path / "cut")
    with pytest.raises(TrainingStopped):
        first.train(should_stop=lambda: True)  # stops after step 1 with a checkpoint
    assert (tmp_path / "cut" / "checkpoint-1").is_dir()
    make(decoders, tmp_path / "cut").train()
    a, b = whole.log.read(), make(decoders, tmp_path / "cut").log.read()
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    for ra, rb in zip(a, b):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-5, abs=1e-6)
    for name in ("encoder.pt", "adapter_demo_sharer_llama.pt"):
        wa = torch.load(tmp_path / "whole" / "final" / name)
        wb = torch.load(tmp_path / "cut" / "final" / name)
        for k in wa:
            torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6)


def test_schedules_and_batches_are_pure_functions_of_the_step():
    cfg = LatentConfig(k_start=1, k_end=3, keep_start=0.5, keep_end=1.0)
    assert [current_k(cfg, s, 5) for s in range(1, 6)] == [1, 1, 2, 2, 3]
    assert keep_probability(cfg, 1, 5) == 0.5 and keep_probability(cfg, 5, 5) == 1.0
    assert batch_indices(10, 4, 0, 3) == batch_indices(10, 4, 0, 3)
    epoch = [i for s in (1, 2) for i in batch_indices(10, 5, 0, s)]
    assert sorted(epoch) == list(range(10))
    w = step_weights(LatentConfig(stage="a", gist=True), "text")
    assert w["tf"] == w["first"] == w["kCE"] == 0 and w["KD"] > 0 and w["gist"] > 0
