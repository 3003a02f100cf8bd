"""KD-QAT of the fuser from a cache: targets line up with the student's positions, terms are logged, a stopped
run resumes on the same curve, gradient checkpointing changes memory and not gradients.
.venv/bin/python -m pytest tests/qc2c/train/test_kd.py -q"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from qc2c.kd.build import BuildSettings, build_cache
from qc2c.kd.teacher import PairTeacher, conversation_rows
from qc2c.train.data import build_examples, read_jsonl
from qc2c.train.kd import KDTrainer
from qc2c.train.sft import TrainingStopped, TrainSpec

FUSER = "tiny:qwen3+qwen2"
ECHO = Path(__file__).resolve().parents[2] / "data" / "train" / "synthetic_echo.jsonl"


@pytest.fixture(scope="module")
def pair():
    from qc2c.models.pair import load_pair

    return load_pair("tiny:qwen3", "tiny:qwen2")


@pytest.fixture(scope="module")
def cache(pair, tmp_path_factory) -> Path:
    """The c2c_fp16 teacher's cache of the tiny pair and its random tiny fuser on the echo chats."""
    from qc2c.fuser.sources import load_fuser

    folder = tmp_path_factory.mktemp("kd_cache")
    tok = pair.receiver_tokenizer
    examples, _ = build_examples(read_jsonl(ECHO), tok, None, 256)
    settings = BuildSettings("echo", max_length=64, top_k=16, random_negatives=8, shard_size=8, batch_size=4)
    teacher = PairTeacher(pair, load_fuser(FUSER), None, tok.pad_token_id)
    vocab = pair.receiver.get_output_embeddings().weight.shape[0]
    build_cache(
        folder, teacher, conversation_rows(examples), settings, vocab_size=vocab, teacher_info={}, progress=False
    )
    return folder


def spec(cache: Path, *, qat: bool = False, steps: int = 4, **train) -> TrainSpec:
    """A KD run of the tiny fuser's shape (hard gates: its gates have annealed) on `cache`."""
    section = {
        "objective": "kd",
        "kd": {"path": str(cache), "temperature": 2.0},
        "projector": {
            "hidden_dim": 32,
            "intermediate_dim": 48,
            "dropout": 0.0,
            "initial_temperature": 0.001,
            "final_temperature": 0.001,
        },
        "optim": {
            "lr": 3e-3,
            "batch_size": 4,
            "grad_accum": 1,
            "max_steps": steps,
            "warmup_ratio": 0.0,
            "scheduler": "constant",
        },
        "save_steps": 2,
        "qat": qat,
        **train,
    }
    kv = {"quant": {"scheme": "int2", "group_size": 32}} if qat else {}
    pair = {"receiver": "tiny:qwen3", "sharer": "tiny:qwen2"}
    manifest = {
        "kind": "train",
        "pair": pair,
        "train": section,
        "kv": kv,
        "runtime": {"device": "cpu", "dtype": "float32"},
    }
    return TrainSpec.from_manifest(manifest)


def held_out_terms(trainer: KDTrainer) -> dict[str, float]:
    """The KD terms over every cache row in eval mode (hard gates), as one batch."""
    trainer.fuser.projectors.eval()
    with torch.no_grad():
        terms = trainer.kd_terms(trainer.make_batch(trainer.examples + trainer.eval_examples))
    return {k: float(v) for k, v in terms.items()}


def test_the_teachers_own_fuser_reproduces_the_cached_targets(pair, cache, tmp_path) -> None:
    """Student = the teacher's fuser, no codec: KL ~ 0 and top-1 agreement 1 at every cached position, which
    fails if a target were read one position off or from another row."""
    same = held_out_terms(KDTrainer(spec(cache), tmp_path / "a", pair=pair, init_from=FUSER))
    assert same["n_positions"] > 30 and same["top1_agreement"] == 1.0 and same["kl"] < 1e-4
    int2 = held_out_terms(KDTrainer(spec(cache, qat=True), tmp_path / "b", pair=pair, init_from=FUSER))
    assert int2["kl"] > 100 * max(same["kl"], 1e-7)  # the int2 message moves the student off the teacher


def test_kd_qat_lowers_the_kl_and_logs_every_term(pair, cache, tmp_path) -> None:
    trainer = KDTrainer(spec(cache, qat=True, steps=8), tmp_path, pair=pair)  # a fresh fuser: far from the teacher
    before = held_out_terms(trainer)["kl"]
    trainer.train(progress=False)
    assert held_out_terms(trainer)["kl"] < before
    rec = [json.loads(x) for x in (tmp_path / "diagnostics.jsonl").read_text().splitlines()]
    assert len(rec) == 8 and {"loss_kl", "loss_hard", "loss_ce", "top1_agreement", "kd_positions"} <= set(rec[0])
    assert all(r["grad_norm"]["weight"] > 0 and r["loss"] == pytest.approx(r["loss_kl"]) for r in rec)
    recipe = json.loads((tmp_path / "config.json").read_text())["qc2c"]
    assert recipe["objective"] == "kd" and recipe["kd"]["cache_content_sha256"]


def test_a_stopped_kd_run_resumes_on_the_same_curve(pair, cache, tmp_path) -> None:
    ref = KDTrainer(spec(cache, qat=True, steps=6), tmp_path / "ref", pair=pair, init_from=FUSER).train(progress=False)
    stopped = KDTrainer(spec(cache, qat=True, steps=6), tmp_path / "run", pair=pair, init_from=FUSER)
    with pytest.raises(TrainingStopped):
        stopped.train(should_stop=lambda: True, progress=False)
    resumed = KDTrainer(spec(cache, qat=True, steps=6), tmp_path / "run", pair=pair, init_from=FUSER).train(
        progress=False
    )
    curve = [json.loads(x)["loss"] for x in (tmp_path / "run" / "diagnostics.jsonl").read_text().splitlines()]
    assert resumed.resumed_from == 1 and curve == pytest.approx(ref.losses, abs=1e-6)


def test_gradient_checkpointing_keeps_gradients_and_saves_activations(pair, cache, tmp_path) -> None:
    grads, saved = {}, {}
    for flag in (False, True):
        trainer = KDTrainer(
            spec(cache, qat=True, gradient_checkpointing=flag), tmp_path / str(flag), pair=pair, init_from=FUSER
        )
        total = [0]

        def pack(t: torch.Tensor, total=total) -> torch.Tensor:
            total[0] += t.numel() * t.element_size()
            return t

        batch = trainer.make_batch(trainer.examples[:8])
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = trainer.compute_loss(batch)
        loss.backward()
        grads[flag] = torch.cat([p.grad.flatten() for p in trainer.fuser.projectors.parameters()])
        saved[flag] = total[0]
    assert torch.equal(grads[False], grads[True])
    assert saved[True] < saved[False], saved  # the receiver keeps only layer inputs (9.9 -> 7.7 MB here)


def test_a_packed_cache_or_a_missing_cache_is_refused(pair, tmp_path) -> None:
    from qc2c.kd.format import CacheFormatError
    from qc2c.kd.teacher import ModelTeacher, packed_rows

    examples, _ = build_examples(read_jsonl(ECHO), pair.receiver_tokenizer, None, 256)
    settings = BuildSettings("packed", max_length=32, top_k=4, packing=True)
    vocab = pair.receiver.get_output_embeddings().weight.shape[0]
    rows = packed_rows(examples, 32)
    build_cache(
        tmp_path / "packed",
        ModelTeacher(pair.receiver),
        rows,
        settings,
        vocab_size=vocab,
        teacher_info={},
        progress=False,
    )
    with pytest.raises(ValueError, match="packing: the rows are packed blocks"):
        KDTrainer(spec(tmp_path / "packed"), tmp_path / "a", pair=pair)
    with pytest.raises(CacheFormatError, match="nowhere/meta.json: \\(file\\): no such file"):
        KDTrainer(spec(tmp_path / "nowhere"), tmp_path / "b", pair=pair)


KILL = """
import json, os, signal, sys
sys.path.insert(0, sys.argv[3])
from test_kd import FUSER, spec
from qc2c.train.kd import KDTrainer
from pathlib import Path
def kill(step, record):
    if step == 3:
        os.kill(os.getpid(), signal.SIGKILL)
KDTrainer(spec(Path(sys.argv[1]), qat=True, steps=6), sys.argv[2], init_from=FUSER).train(on_step=kill, progress=False)
"""


def test_a_sigkilled_kd_run_resumes_with_no_step_lost_or_repeated(pair, cache, tmp_path) -> None:
    import os
    import signal
    import subprocess
    import sys

    ref = KDTrainer(spec(cache, qat=True, steps=6), tmp_path / "ref", pair=pair, init_from=FUSER).train(progress=False)
    run, here = tmp_path / "run", str(Path(__file__).parent)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", KILL, str(cache), str(run), here], env=env, capture_output=True, timeout=300
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert (run / "checkpoint-2").is_dir() and not (run / "checkpoint-4").exists()
    resumed = KDTrainer(spec(cache, qat=True, steps=6), run, pair=pair, init_from=FUSER).train(progress=False)
    lines = [json.loads(x) for x in (run / "diagnostics.jsonl").read_text().splitlines()]
    assert resumed.resumed_from == 2 and [x["step"] for x in lines] == list(range(1, 7))
    assert [x["loss"] for x in lines] == pytest.approx(ref.losses, abs=1e-6)
