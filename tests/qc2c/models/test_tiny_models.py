"""Tiny model zoo: deterministic builds, the real from_pretrained path, tokenizers and chat templates.

python -m pytest tests/qc2c/models/test_tiny_models.py -q
"""

from __future__ import annotations

import dataclasses
import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from qc2c.models import tiny
from qc2c.models.tiny import TINY_MODELS, UnknownTinyModel, build_tiny, is_tiny_ref, resolve_tiny, spec_hash

MESSAGES = [{"role": "user", "content": "Which planet is closest to the Sun?"}]


def _file_hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="session")
def zoo(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {name: build_tiny(name, root) for name in TINY_MODELS}


@pytest.fixture(scope="session")
def tokenizers(zoo):
    return {name: AutoTokenizer.from_pretrained(path) for name, path in zoo.items()}


def test_same_spec_builds_byte_identical_files(zoo, tmp_path):
    for name, first in zoo.items():
        second = build_tiny(name, tmp_path)
        assert first.name == second.name
        hashes = _file_hashes(first)
        assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(hashes)
        assert hashes == _file_hashes(second), name


def test_resolve_builds_once_into_the_cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("QC2C_TINY_CACHE", str(tmp_path))
    path = resolve_tiny("tiny:qwen2")
    assert path.parent == tmp_path and path.name.startswith("qwen2-")
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert resolve_tiny("tiny:qwen2") == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary build folder left behind"


def test_concurrent_builds_agree_and_leave_no_temporary_folders(tmp_path):
    with ThreadPoolExecutor(max_workers=2) as pool:
        paths = list(pool.map(lambda _: build_tiny("llama", tmp_path), range(2)))
    assert paths[0] == paths[1] and (paths[0] / "model.safetensors").is_file()
    assert [p.name for p in tmp_path.iterdir()] == [paths[0].name]


def test_cache_key_follows_the_spec(monkeypatch):
    before = spec_hash("qwen2")
    assert len({spec_hash(name) for name in TINY_MODELS}) == len(TINY_MODELS)
    changed = dataclasses.replace(TINY_MODELS["qwen2"], seed=99)
    monkeypatch.setitem(tiny.TINY_MODELS, "qwen2", changed)
    assert spec_hash("qwen2") != before


def test_unknown_name_lists_the_known_models(tmp_path, monkeypatch):
    monkeypatch.setenv("QC2C_TINY_CACHE", str(tmp_path))
    with pytest.raises(UnknownTinyModel, match=r"'tiny:qwen4'.*tiny:llama, tiny:qwen2, tiny:qwen3"):
        resolve_tiny("tiny:qwen4")
    with pytest.raises(UnknownTinyModel, match="expected 'tiny:<name>'"):
        resolve_tiny("Qwen/Qwen3-0.6B")


def test_is_tiny_ref():
    assert is_tiny_ref("tiny:qwen3")
    assert not is_tiny_ref("Qwen/Qwen3-0.6B")
    assert not is_tiny_ref("/models/tiny:qwen3")


@pytest.mark.parametrize(
    ("name", "cls"), [("qwen3", "Qwen3ForCausalLM"), ("qwen2", "Qwen2ForCausalLM"), ("llama", "LlamaForCausalLM")]
)
def test_loads_with_from_pretrained_and_runs_forward(zoo, tokenizers, name, cls):
    spec = TINY_MODELS[name]
    model = AutoModelForCausalLM.from_pretrained(zoo[name], dtype=torch.float32).eval()
    assert type(model).__name__ == cls
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads) == (
        spec.n_layers,
        spec.hidden_size,
        spec.n_heads,
        spec.n_kv_heads,
    )
    tok = tokenizers[name]
    assert cfg.vocab_size == len(tok)
    ids = tok.apply_chat_template(MESSAGES, add_generation_prompt=True, enable_thinking=False, tokenize=False)
    batch = tok(ids, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model(**batch, use_cache=True)
    assert out.logits.shape == (1, batch.input_ids.shape[1], len(tok))
    assert torch.isfinite(out.logits).all()
    keys = out.past_key_values.layers[0].keys
    assert keys.shape == (1, spec.n_kv_heads, batch.input_ids.shape[1], spec.head_dim)
    # random weights at init_std 0.08 must still give a non-uniform next-token distribution
    assert out.logits[0, -1].softmax(-1).max() > 2.0 / len(tok)


@pytest.mark.parametrize("name", sorted(TINY_MODELS))
def test_option_letters_are_single_distinct_tokens(tokenizers, name):
    tok = tokenizers[name]
    encoded = [tok(f" {letter}", add_special_tokens=False).input_ids for letter in "ABCD"]
    assert all(len(ids) == 1 for ids in encoded), encoded
    assert len({ids[0] for ids in encoded}) == 4


def test_qwen_chat_template_honours_enable_thinking(tokenizers):
    tok = tokenizers["qwen3"]
    off = tok.apply_chat_template(MESSAGES, add_generation_prompt=True, enable_thinking=False, tokenize=False)
    on = tok.apply_chat_template(MESSAGES, add_generation_prompt=True, enable_thinking=True, tokenize=False)
    prefix = "<|im_start|>user\nWhich planet is closest to the Sun?<|im_end|>\n<|im_start|>assistant\n"
    assert on == prefix
    assert off == prefix + "<think>\n\n</think>\n\n"
    assert tok.pad_token == "<|endoftext|>" and tok.eos_token == "<|im_end|>"


def test_llama_chat_template_is_llama3_style(tokenizers):
    tok = tokenizers["llama"]
    text = tok.apply_chat_template(MESSAGES, add_generation_prompt=True, enable_thinking=False, tokenize=False)
    assert text == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhich planet is closest to the Sun?"
        "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    ids = tok(text, add_special_tokens=False).input_ids
    assert ids[0] == tok.bos_token_id and tok.eos_token == "<|eot_id|>"
    assert tok.decode(ids) == text


def test_qwen_pair_shares_a_tokenizer_and_llama_has_its_own(zoo, tokenizers):
    assert (zoo["qwen3"] / "tokenizer.json").read_bytes() == (zoo["qwen2"] / "tokenizer.json").read_bytes()
    text = "Accurately answer the following question: which gas do plants take in? 2024"
    qwen3, qwen2, llama = (tokenizers[n](text, add_special_tokens=False).input_ids for n in ("qwen3", "qwen2", "llama"))
    assert qwen3 == qwen2
    assert qwen3 != llama
    assert tokenizers["qwen3"].get_vocab() != tokenizers["llama"].get_vocab()


@pytest.mark.parametrize("name", ["qwen3", "llama"])
def test_offsets_cover_the_text(tokenizers, name):
    tok = tokenizers[name]
    text = "Choices:\nA. the Sun\nB. héllo 12345\n\nThe correct answer is"
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    assert enc.offset_mapping[0][0] == 0 and enc.offset_mapping[-1][1] == len(text)
    assert all(a[1] <= b[0] + 1 for a, b in zip(enc.offset_mapping, enc.offset_mapping[1:]))
    assert tok.decode(enc.input_ids) == text
