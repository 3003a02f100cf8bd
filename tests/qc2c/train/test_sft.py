"""SFT of the projectors on the tiny pairs: loss decreases, padding-correct batches, hetero alignment, QAT
gradients, checkpoint -> load -> evaluate, preflight of the trained fuser.
.venv/bin/python -m pytest tests/qc2c/train/test_sft.py -q"""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoConfig, AutoTokenizer

from qc2c.c2c import C2CModel
from qc2c.config import TrainConfig, from_json, kv_config
from qc2c.fuser.preflight import check_compatible
from qc2c.fuser.sources import load_fuser
from qc2c.models.pair import resolve_model_dir
from qc2c.train.data import collate
from qc2c.train.sft import Trainer, TrainSpec


def spec(section, **kw) -> TrainSpec:
    pair = {"receiver": "tiny:qwen3", "sharer": kw.pop("sharer", "tiny:qwen2"), "alignment": kw.pop("alignment", None)}
    train = from_json(TrainConfig, section(**kw.pop("train", {})))
    return TrainSpec(**pair, train=train, kv=kv_config(kw.pop("kv", None)), **kw)


def test_loss_decreases_on_a_learnable_task(tmp_path, section) -> None:
    result = Trainer(spec(section, train={"optim": {"max_steps": 24}}), tmp_path).train(progress=False)
    first, last = sum(result.losses[:4]) / 4, sum(result.losses[-4:]) / 4
    assert last < first - 0.5, result.losses  # the echo task is learnable through the fused cache alone
    lines = [json.loads(x) for x in (tmp_path / "diagnostics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(1, 25))
    rec = lines[-1]
    assert set(rec["grad_norm"]) == {"gate", "weight", "other", "total"} and rec["grad_norm"]["total"] > 0
    assert rec["tokens_per_s"] > 0 and rec["peak_memory_bytes"] > 0 and len(rec["gate_logits"]["key"]) == 4
    # anneal_steps defaults to the run's optimizer steps: the last step reaches the final temperature
    assert rec["gate_temperature"] == pytest.approx(0.001, rel=1e-5)
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == [f"checkpoint-{s}" for s in (12, 16, 20, 24, 4, 8)]
    assert not list(tmp_path.glob(".*tmp*"))


def test_row_loss_does_not_depend_on_batch_padding(tmp_path, section) -> None:
    trainer = Trainer(spec(section), tmp_path)
    trainer.fuser.projectors.eval()  # hard gates: deterministic
    exs = sorted(trainer.examples, key=lambda e: len(e.input_ids))
    short, long = exs[0], exs[-1]
    assert len(short.input_ids) != len(long.input_ids) or short.split != long.split
    with torch.no_grad():
        alone = trainer.compute_loss(collate([short], trainer.pad_id))
        padded = trainer.compute_loss(collate([short, short, short], trainer.pad_id))
        mixed_rows = collate([short, long], trainer.pad_id)
        mixed_rows.labels[1] = -100  # only the short row counts
        mixed = trainer.compute_loss(mixed_rows)
    assert torch.allclose(alone, padded, atol=1e-5) and torch.allclose(alone, mixed, atol=1e-5)


def test_checkpoint_loads_and_evaluates_like_the_in_memory_model(tmp_path, section) -> None:
    trainer = Trainer(spec(section, train={"optim": {"max_steps": 4}}), tmp_path)
    trainer.train(progress=False)
    in_memory = C2CModel(trainer.pair, trainer.fuser)
    loaded = C2CModel.from_pretrained("tiny:qwen3", "tiny:qwen2", tmp_path / "final")
    ex = trainer.examples[0]
    ids = torch.tensor([ex.input_ids])
    a = in_memory.forward(ids[:, : ex.split + 1], kv_cache_index=None)
    gen_a = in_memory.generate(ids[:, : ex.split + 1], max_new_tokens=4)
    gen_b = loaded.generate(ids[:, : ex.split + 1], max_new_tokens=4)
    inputs = in_memory.chat_inputs([{"role": "user", "content": "Say red twice."}])
    la, lb = in_memory.forward(**inputs).logits, loaded.forward(**inputs).logits
    assert torch.equal(la, lb) and torch.equal(gen_a, gen_b)
    assert a.logits.shape[0] == 1
    # and the weights changed from the initial ones (a trained checkpoint, not the init)
    step4 = load_fuser(tmp_path / "checkpoint-4")
    for p, q in zip(step4.projectors.state_dict().values(), loaded.fuser.projectors.state_dict().values()):
        assert torch.equal(p, q)


def _preflight(fuser_dir, receiver, sharer, alignment):
    r, s = resolve_model_dir(receiver), resolve_model_dir(sharer)
    toks = (AutoTokenizer.from_pretrained(r), AutoTokenizer.from_pretrained(s))
    return check_compatible(
        load_fuser(fuser_dir),
        AutoConfig.from_pretrained(r),
        AutoConfig.from_pretrained(s),
        toks,
        alignment=alignment,
        names=(receiver, sharer),
    )


def test_hetero_training_with_alignment_and_preflight(tmp_path, section) -> None:
    s = spec(section, sharer="tiny:llama", alignment="longest", train={"optim": {"max_steps": 3}})
    result = Trainer(s, tmp_path).train(progress=False)
    assert len(result.losses) == 3 and all(torch.isfinite(torch.tensor(result.losses)))
    recipe = json.loads((tmp_path / "config.json").read_text())
    assert recipe["model"]["is_do_alignment"] is True and recipe["model"]["alignment_strategy"] == "longest"
    assert _preflight(tmp_path, "tiny:qwen3", "tiny:llama", "longest") == []
    refused = _preflight(tmp_path, "tiny:qwen3", "tiny:qwen2", None)
    assert any("trained for sharer tiny:llama" in p for p in refused), refused
    assert any("alignment" in p for p in refused), refused
    model = C2CModel.from_pretrained("tiny:qwen3", "tiny:llama", tmp_path, alignment="longest")
    out = model.generate(**model.chat_inputs([{"role": "user", "content": "Say red twice."}]), max_new_tokens=3)
    assert out.shape[0] == 1


def test_same_tokenizer_checkpoint_refused_for_another_pair(tmp_path, section) -> None:
    Trainer(spec(section, train={"optim": {"max_steps": 1}}), tmp_path).train(progress=False)
    assert _preflight(tmp_path, "tiny:qwen3", "tiny:qwen2", None) == []
    refused = _preflight(tmp_path, "tiny:qwen3", "tiny:llama", "longest")
    assert refused and any("head_dim" in p or "model:" in p or "layer" in p for p in refused), refused


def _grads(trainer: Trainer) -> list[torch.Tensor]:
    batch = collate(trainer.examples[:4], trainer.pad_id)
    trainer.fuser.projectors.train()
    torch.manual_seed(0)  # same Gumbel noise for both runs
    trainer.compute_loss(batch).backward()
    return [p.grad.clone() for p in trainer.fuser.projectors.parameters()]


def test_qat_changes_gradients(tmp_path, section) -> None:
    plain = Trainer(spec(section), tmp_path / "a")
    qat = Trainer(spec(section, train={"qat": True}, kv={"quant": {"scheme": "int2"}}), tmp_path / "b", pair=plain.pair)
    assert qat.message_path is not None
    g_plain, g_qat = _grads(plain), _grads(qat)
    assert all(torch.isfinite(g).all() for g in g_qat)
    assert sum(float(g.abs().sum()) for g in g_qat) > 0  # gradients reach the projectors through the codec
    assert any(not torch.allclose(a, b, atol=1e-7) for a, b in zip(g_plain, g_qat))
    # the same codec with a lossless scheme gives the plain gradients back (the difference is quantization)
    lossless = Trainer(
        spec(section, train={"qat": True}, kv={"quant": {"scheme": "fp32"}}), tmp_path / "c", pair=plain.pair
    )
    for a, b in zip(g_plain, _grads(lossless)):
        assert torch.allclose(a, b, atol=1e-6)


def test_different_tokenizers_need_alignment(tmp_path, section) -> None:
    with pytest.raises(ValueError, match="pair.alignment: none"):
        Trainer(spec(section, sharer="tiny:llama"), tmp_path)


def test_one_percent_held_out_and_eval_loss_at_checkpoints(tmp_path, section, echo) -> None:
    from qc2c.train.data import read_jsonl

    convs = (read_jsonl(echo) * 13)[:200]  # 200 conversations -> 2 held out
    train = section(optim={"max_steps": 4})
    spec = TrainSpec(receiver="tiny:qwen3", sharer="tiny:qwen2", train=from_json(TrainConfig, train))
    trainer = Trainer(spec, tmp_path, conversations=convs)
    assert len(trainer.eval_examples) == 2 and len(trainer.examples) == 198
    trainer.train(progress=False)
    lines = [json.loads(x) for x in (tmp_path / "diagnostics.jsonl").read_text().splitlines()]
    assert [("eval_loss" in r) for r in lines] == [False, False, False, True]
    assert lines[-1]["eval_loss"] > 0 and lines[-1]["eval_loss"] == pytest.approx(trainer.evaluate(), rel=1e-6)
