"""The shipped kind: train manifests turn into a training spec (and, with qat, a codec for the real pair's
layer counts) without loading a model. .venv/bin/python -m pytest tests/qc2c/train/test_manifests.py -q"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qc2c.fuser.layer_map import last_aligned
from qc2c.train.qat import build_qat_path
from qc2c.train.sft import TrainSpec

ROOT = Path(__file__).resolve().parents[3]
TRAIN_MANIFESTS = sorted(
    p for p in (ROOT / "manifests").glob("*.yaml") if re.search(r"^kind: *train\b", p.read_text(), re.MULTILINE)
)
LAYERS = {
    "Qwen/Qwen3-0.6B": 28,
    "Qwen/Qwen2.5-0.5B-Instruct": 24,
    "meta-llama/Llama-3.2-1B-Instruct": 16,
    "demo:receiver": 4,
    "demo:sharer": 5,
    "demo:sharer_llama": 6,
}


@pytest.mark.parametrize("path", TRAIN_MANIFESTS, ids=lambda p: p.name)
def test_shipped_train_manifest_builds_a_spec(path: Path) -> None:
    from runner.manifest import load_manifest

    m = load_manifest(path).model_dump(mode="json", by_alias=True)
    spec = TrainSpec.from_manifest(m)
    assert spec.optim.batch_size >= 1 and spec.projector.num_layers >= 3
    assert spec.alignment in (None, "first", "longest")
    if spec.train.qat:
        r, s = LAYERS[spec.receiver], LAYERS[spec.sharer]
        path_ = build_qat_path(spec.kv, layer_map=last_aligned(r, s), n_sharer_layers=s, n_receiver_layers=r)
        assert path_.codec is not None


def test_there_are_train_manifests() -> None:
    assert {p.stem for p in TRAIN_MANIFESTS} >= {"m7_fuser_train", "m5_qat_int8_train"}
