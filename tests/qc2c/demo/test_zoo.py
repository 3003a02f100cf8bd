"""The shipped demo zoo: files match their sha256 record, models load with from_pretrained, refs resolve."""

from __future__ import annotations

import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from qc2c.demo import zoo
from qc2c.fuser.sources import load_fuser
from qc2c.models.pair import ModelNotAvailable, resolve_model_dir

ZOO_BUDGET_BYTES = 20 * 1024 * 1024  # the whole shipped zoo, fusers and data included


def test_shipped_zoo_matches_its_record():
    assert zoo.verify(zoo.SHIPPED) == []


def test_shipped_zoo_stays_small():
    total = sum(p.stat().st_size for p in zoo.SHIPPED.rglob("*") if p.is_file())
    assert total <= ZOO_BUDGET_BYTES, f"{total / 2**20:.1f} MiB"


def test_verify_names_a_changed_a_missing_and_an_unrecorded_file(tmp_path):
    copy = tmp_path / "zoo"
    shutil.copytree(zoo.SHIPPED, copy)
    (copy / "data" / "demo" / "test.jsonl").write_text("{}\n")
    (copy / "receiver" / "config.json").unlink()
    (copy / "extra.txt").write_text("x")
    problems = "\n".join(zoo.verify(copy))
    assert "test.jsonl: sha256 differs" in problems
    assert "config.json: recorded in SHA256SUMS but missing" in problems
    assert "extra.txt: not in SHA256SUMS" in problems


@pytest.mark.parametrize("name", zoo.MODELS)
def test_models_load_with_from_pretrained(name):
    path = resolve_model_dir(f"demo:{name}")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert next(model.parameters()).dtype == torch.float32
    assert {p.suffix for p in path.iterdir()} >= {".safetensors", ".json"}
    assert len(tokenizer) == model.config.vocab_size


@pytest.mark.parametrize("name", zoo.FUSERS)
def test_fusers_load_strictly(name):
    fuser = load_fuser(f"demo:{name}")
    assert fuser.n_receiver_layers == 4 and fuser.sha256


def test_unknown_or_missing_refs_say_what_to_do(monkeypatch, tmp_path):
    with pytest.raises(ModelNotAvailable, match="known: demo:receiver"):
        resolve_model_dir("demo:teacher")
    monkeypatch.setenv("QC2C_DEMO_ZOO", str(tmp_path))
    with pytest.raises(ModelNotAvailable, match="make demo-zoo"):
        resolve_model_dir("demo:receiver")
