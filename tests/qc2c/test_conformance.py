"""Reproduce the upstream C2C reference outputs (tests/data/conformance/c2c) through the public entry point.

Run: .venv/bin/python -m pytest tests/qc2c/test_conformance.py -q   (the data ships with the repository)
Tolerance: max |diff| <= 1e-5 on logits and fused caches (conformance README). The reference was produced with
eager attention; every case runs with eager and with SDPA (the default everywhere), and both must stay within it.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from qc2c import C2CModel, load_fuser
from qc2c.models.align import TokenAligner

TOL = 1e-5
ATTENTION = ("sdpa", "eager")


@pytest.fixture(scope="module")
def ref(conformance):
    return torch.load(conformance / "reference_float32.pt", weights_only=True)


@pytest.fixture(scope="module", params=ATTENTION)
def pair_a(conformance, request):
    f = conformance / "fixtures"
    return C2CModel.from_pretrained(
        str(f / "models/recv_qwen3"),
        str(f / "models/sharer_qwen2"),
        f / "ckpt/tiny_qwen3+tiny_qwen2_Fuser",
        attn_implementation=request.param,
    )


@pytest.fixture(scope="module", params=ATTENTION)
def pair_b(conformance, request):
    f = conformance / "fixtures"
    return C2CModel.from_pretrained(
        str(f / "models/recv_qwen3"),
        str(f / "models/sharer_llama"),
        f / "ckpt/tiny_qwen3+tiny_llama_Fuser",
        alignment="first",
        attn_implementation=request.param,
    )


def test_fixture_files_match_their_recorded_hashes(conformance):
    """The fixtures are the files the reference was computed from (no line-ending or LFS rewrite on the way)."""
    f = conformance / "fixtures"
    recorded = json.loads((f / "fixtures_manifest.json").read_text())["files"]
    present = {p.relative_to(f).as_posix() for p in f.rglob("*") if p.is_file()} - {"fixtures_manifest.json"}
    assert present == set(recorded)
    for name, digest in recorded.items():
        assert hashlib.sha256((f / name).read_bytes()).hexdigest() == digest, name


def maxdiff(a, b) -> float:
    return (a.float() - b.float()).abs().max().item()


def assert_cache(cache, expected):
    for t, (k, v) in enumerate(zip(expected["key"], expected["value"], strict=True)):
        assert maxdiff(cache.layers[t].keys, k) <= TOL, f"layer {t} keys"
        assert maxdiff(cache.layers[t].values, v) <= TOL, f"layer {t} values"


def test_a0_receiver_and_sharer_alone(ref, pair_a):
    case, ids = ref["A0_receiver_and_sharer_alone"], ref["A1_prefill_generate_style"]["input_ids"]
    out = pair_a.forward(ids)  # kv_cache_index None: plain receiver pass
    assert maxdiff(out.logits, case["logits"]) <= TOL
    assert_cache(out.cache, case["receiver_cache"])
    with torch.no_grad():
        s = pair_a.pair.sharer(input_ids=ids, use_cache=True).past_key_values
    assert_cache(s, case["sharer_cache"])


def test_a1_generate_style_prefill(ref, pair_a):
    case = ref["A1_prefill_generate_style"]
    out = pair_a.forward(case["input_ids"], case["attention_mask"], case["position_ids"], case["kv_cache_index"])
    assert out.logits.shape == (1, 1, 420)
    assert maxdiff(out.logits, case["logits"]) <= TOL
    assert_cache(out.cache, case["fused_cache"])
    # sanity: fusion changed the cache (gates are open in some layers), so the test can fail
    assert maxdiff(out.cache.layers[0].keys, ref["A0_receiver_and_sharer_alone"]["receiver_cache"]["key"][0]) > 1e-3


def test_a2_no_projection_sections(ref, pair_a):
    case, ids = ref["A2_no_projection_sections"], ref["A1_prefill_generate_style"]["input_ids"]
    n = ids.shape[1]
    one = pair_a.forward(ids, kv_cache_index=[torch.tensor([[[-1, 0]] * n])])
    assert maxdiff(one.logits, case["logits_one_section"]) <= TOL
    two = pair_a.forward(ids, kv_cache_index=[torch.tensor([[[-1, 0]] * (n - 1)]), torch.tensor([[[-1, 0]]])])
    assert maxdiff(two.logits, case["logits_two_sections_mask_minus1"]) <= TOL


def test_a7_projector_unit_io(ref, conformance):
    fuser = load_fuser(conformance / "fixtures/ckpt/tiny_qwen3+tiny_qwen2_Fuser")
    for i, case in enumerate(ref["A7_projector_unit_io"]):
        p = fuser.projectors[i]
        assert p.key_gate_logit.item() == pytest.approx(case["key_gate_logit"])
        with torch.no_grad():
            k, v = p((case["source_key"], case["source_value"]), (case["target_key"], case["target_value"]))
        assert str(k.dtype) == case["out_dtype"]
        assert maxdiff(k, case["out_key"]) <= TOL and maxdiff(v, case["out_value"]) <= TOL


def test_b1_aligned_prefill_first(ref, pair_b):
    case = ref["B1_aligned_prefill_first"]
    details = case["aligner_details"]
    aligner = TokenAligner(pair_b.pair.receiver_tokenizer, pair_b.pair.sharer_tokenizer, "first")
    question = details["slm_text"].split("user\n", 1)[1].split("<|im_end|>")[0]
    chat = aligner.align_chat_messages([{"role": "user", "content": question}])
    assert (chat.receiver_text, chat.sharer_text) == (details["slm_text"], details["llm_text"])
    assert chat.receiver_ids == details["slm_ids_padded"] and chat.sharer_ids == details["llm_ids_padded"]
    assert chat.message_mask == details["message_mask"]
    assert chat.receiver_padding_mask == details["slm_padding_mask"]
    assert chat.sharer_padding_mask == details["llm_padding_mask"]
    assert [(s["type"], tuple(s["slm_range"]), tuple(s["llm_range"])) for s in chat.sections] == [
        (s["type"], tuple(s["slm_range"]), tuple(s["llm_range"])) for s in details["sections"]
    ]
    inputs = chat.model_inputs()
    assert torch.equal(inputs["input_ids"], case["input_ids"][0])
    assert torch.equal(inputs["sharer_input_ids"], case["input_ids"][1])
    assert all(torch.equal(a, b) for a, b in zip(inputs["kv_cache_index"], case["kv_cache_index"], strict=True))
    # the reference call form: lists of per-model ids and float masks
    out = pair_b.forward(case["input_ids"], case["attention_mask"], case["position_ids"], case["kv_cache_index"])
    assert maxdiff(out.logits, case["logits"]) <= TOL
    assert_cache(out.cache, case["fused_cache"])
    again = pair_b.forward(**inputs)  # and the aligner's own inputs give the same
    assert maxdiff(again.logits, case["logits"]) <= TOL
