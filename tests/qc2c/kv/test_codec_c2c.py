"""The codec as C2C's message path on the conformance fixtures: `python -m pytest tests/qc2c/kv/test_codec_c2c.py -q`.

Uses tests/data/conformance/c2c (docs/c2c.md). Pair A: receiver 4 layers <- sharer 3 layers, one fused
section (every prompt token but the last), so each fused position depends only on its own sharer and
receiver KV: sparse fuse must equal dense fuse at kept positions and the receiver's own KV elsewhere.
"""

from __future__ import annotations

import pytest
import torch

from qc2c import C2CModel
from qc2c.config import kv_config
from qc2c.kv.codec import build_codec


def _load(conformance, dtype):
    f = conformance / "fixtures"
    return C2CModel.from_pretrained(
        str(f / "models/recv_qwen3"),
        str(f / "models/sharer_qwen2"),
        f / "ckpt/tiny_qwen3+tiny_qwen2_Fuser",
        dtype=dtype,
    )


@pytest.fixture(scope="module")
def case(conformance):
    return torch.load(conformance / "reference_float32.pt", weights_only=True)["A1_prefill_generate_style"]


@pytest.fixture(scope="module")
def pair_f32(conformance):
    return _load(conformance, torch.float32)


def _codec(model: C2CModel, kv: dict):
    n_s, n_r = model.pair.sharer.config.num_hidden_layers, model.pair.receiver.config.num_hidden_layers
    return build_codec(kv_config(kv), layer_map=dict(model.fuser.layer_map), n_sharer_layers=n_s, n_receiver_layers=n_r)


def _run(model: C2CModel, case: dict, kv: dict | None):
    path = None if kv is None else _codec(model, kv)
    return model.forward(
        case["input_ids"], case["attention_mask"], case["position_ids"], case["kv_cache_index"], message_path=path
    )


def _same(a, b) -> bool:
    return torch.equal(a.logits, b.logits) and all(
        torch.equal(x.keys, y.keys) and torch.equal(x.values, y.values) for x, y in zip(a.cache.layers, b.cache.layers)
    )


@pytest.mark.parametrize("method", ["all", "back", "delta", "knorm"])
def test_lossless_fp32_message_at_keep_1_reproduces_uncompressed_c2c_exactly(pair_f32, case, method) -> None:
    plain = _run(pair_f32, case, None)
    sent = _run(pair_f32, case, {"quant": {"scheme": "fp32"}, "selection": {"method": method, "keep": 1.0}})
    assert _same(plain, sent)
    record = sent.records[0]
    n = case["input_ids"].shape[1] - 1  # every prompt token but the last is fused
    assert record["n_tokens_sent"] == record["n_tokens"] == n
    assert record["nbytes"] == record["nbytes_closed_form"]
    assert (plain.logits - case["logits"]).abs().max() <= 1e-5  # and it is the conformance reference


def test_lossless_bf16_message_at_bfloat16_runtime_reproduces_uncompressed_c2c_exactly(conformance, case) -> None:
    model = _load(conformance, torch.bfloat16)
    assert _same(_run(model, case, None), _run(model, case, {"quant": {"scheme": "bf16"}}))


def test_sparse_fuse_is_dense_fuse_at_kept_positions_and_the_receivers_own_kv_elsewhere(pair_f32, case) -> None:
    dense = _run(pair_f32, case, None)
    alone = _run(pair_f32, {**case, "kv_cache_index": [torch.tensor([[[-1, 0]] * case["input_ids"].shape[1]])]}, None)
    codec = _codec(pair_f32, {"quant": {"scheme": "fp32"}, "selection": {"method": "random", "keep": 0.4, "seed": 1}})
    sparse = pair_f32.forward(
        case["input_ids"], case["attention_mask"], case["position_ids"], case["kv_cache_index"], message_path=codec
    )
    n = case["input_ids"].shape[1] - 1
    assert sparse.records[0]["n_tokens_sent"] == round(0.4 * n)
    kept_positions = torch.zeros(n, dtype=torch.bool)
    for t, layer in enumerate(sparse.cache.layers):  # the last (unfused) token attends to the fused cache: skip it
        on_dense = (layer.keys == dense.cache.layers[t].keys).all(-1).all(1)[0, :n]
        on_alone = (layer.keys == alone.cache.layers[t].keys).all(-1).all(1)[0, :n]
        assert bool((on_dense | on_alone).all())
        kept_positions |= on_dense & ~on_alone
    assert int(kept_positions.sum()) <= sparse.records[0]["n_tokens_sent"]
    assert int(kept_positions.sum()) > 0


def test_int8_message_stays_close_to_uncompressed_c2c(pair_f32, case) -> None:
    """Closeness is measured against what fusion itself changes (fused vs receiver-alone logits)."""
    dense = _run(pair_f32, case, None)
    alone = _run(pair_f32, {**case, "kv_cache_index": [torch.tensor([[[-1, 0]] * case["input_ids"].shape[1]])]}, None)
    int8 = _run(pair_f32, case, {"quant": {"scheme": "int8"}})
    fusion_effect = float((dense.logits - alone.logits).abs().max())
    int8_error = float((int8.logits - dense.logits).abs().max())
    print(f"\nint8 logit error {int8_error:.2e} vs fusion effect {fusion_effect:.2e}")
    assert 0 < int8_error < 0.05 * fusion_effect


def test_attention_selection_runs_through_c2c_and_keeps_its_window(pair_f32, case) -> None:
    out = _run(
        pair_f32, case, {"quant": {"scheme": "int8"}, "selection": {"method": "attention", "keep": 0.1, "window": 8}}
    )
    n = case["input_ids"].shape[1] - 1
    assert out.records[0]["n_tokens_sent"] == max(round(0.1 * n), 8)
