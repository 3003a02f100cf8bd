"""Fuser checkpoint layout: strict loading, partial folders, sha256, round trips, sources.
Run: .venv/bin/python -m pytest tests/qc2c/fuser/test_checkpoint.py -q"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from qc2c.fuser.checkpoint import FuserError, fuser_sha256, save_fuser
from qc2c.fuser.layer_map import last_aligned
from qc2c.fuser.projector import C2CProjector
from qc2c.fuser.sources import load_fuser

ARGS = {
    "source_dim": 6,
    "target_dim": 8,
    "source_num_heads": 1,
    "target_num_heads": 2,
    "dtype": torch.float32,
    "hidden_dim": 12,
    "intermediate_dim": 10,
    "num_layers": 3,
}


def write(root: Path, n: int = 3) -> Path:
    torch.manual_seed(1)
    projectors = [C2CProjector(**ARGS) for _ in range(n)]
    recipe = {"model": {"base_model": "tiny:qwen3", "teacher_model": "tiny:qwen2"}}
    return save_fuser(root, projectors, last_aligned(n, 2), recipe, [ARGS] * n)


def test_round_trip_loads_the_same_weights(tmp_path):
    root = write(tmp_path / "f")
    fuser = load_fuser(root)
    assert fuser.layer_map == {0: 0, 1: 0, 2: 1}
    assert fuser.init_args[0]["dtype"] is torch.float32
    torch.manual_seed(1)
    first = C2CProjector(**ARGS)
    for k, v in first.state_dict().items():
        assert torch.equal(fuser.projectors[0].state_dict()[k], v), k
    enc = json.loads((root / "final/projector_0.json").read_text())
    assert enc["class"] == "C2CProjector"
    assert enc["init_args"]["dtype"] == {"__type__": "torch.dtype", "value": "float32"}
    assert load_fuser(root / "final").sha256 == fuser.sha256  # final/ itself is accepted


def test_sha256_is_location_independent_and_content_sensitive(tmp_path):
    a = write(tmp_path / "a")
    b = tmp_path / "elsewhere" / "b"
    shutil.copytree(a, b)
    assert fuser_sha256(a) == fuser_sha256(b) == load_fuser(b).sha256
    (b / "config.json").write_text('{"model": {}}')
    assert fuser_sha256(b) != fuser_sha256(a)


def test_sha256_pin_is_verified(tmp_path):
    root = write(tmp_path / "f")
    good = fuser_sha256(root)
    assert load_fuser(root, sha256=good).sha256 == good
    with pytest.raises(FuserError, match="sha256 mismatch"):
        load_fuser(root, sha256="0" * 64)


def test_missing_and_unexpected_keys_are_named(tmp_path):
    root = write(tmp_path / "f")
    sd = torch.load(root / "final/projector_1.pt", weights_only=True)
    del sd["key_in.bias"]
    sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, root / "final/projector_1.pt")
    with pytest.raises(FuserError) as e:
        load_fuser(root)
    msg = str(e.value)
    assert "projector_1.pt" in msg and "key_in.bias" in msg and "extra.weight" in msg


def test_wrong_class_is_refused(tmp_path):
    root = write(tmp_path / "f")
    meta = json.loads((root / "final/projector_0.json").read_text())
    meta["class"] = "AllInOneProjector"
    (root / "final/projector_0.json").write_text(json.dumps(meta))
    with pytest.raises(FuserError, match="AllInOneProjector"):
        load_fuser(root)


@pytest.mark.parametrize(
    ("remove", "expect"),
    [
        ("projector_1.pt", r"missing projector index\(es\) \[1\]"),
        ("projector_2.json", "missing projector_2.json"),
        ("projector_config.json", "missing projector_config.json"),
    ],
)
def test_partial_final_is_refused_naming_what_is_missing(tmp_path, remove, expect):
    root = write(tmp_path / "f")
    (root / "final" / remove).unlink()
    with pytest.raises(FuserError, match=expect) as e:
        load_fuser(root)
    assert "final/" in str(e.value)


def test_empty_and_absent_folders_are_refused(tmp_path):
    (tmp_path / "empty" / "final").mkdir(parents=True)
    with pytest.raises(FuserError, match="no projector_"):
        load_fuser(tmp_path / "empty")
    with pytest.raises(FuserError, match="does not exist"):
        load_fuser(tmp_path / "nope")


def test_hub_offline_cache_miss_says_what_to_prefetch(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(FuserError, match="prefetch") as e:
        load_fuser("hub:nics-efc/C2C_Fuser/qwen3_0.6b+qwen2.5_0.5b_Fuser/final@main")
    assert "offline" in str(e.value)


def test_conformance_checkpoints_load_strictly(conformance):
    fuser = load_fuser(conformance / "fixtures/ckpt/tiny_qwen3+tiny_llama_Fuser")
    assert fuser.layer_map == {0: 2, 1: 3, 2: 4, 3: 5}  # README: pair B last_aligned
    assert fuser.model_field("is_do_alignment") is True


def test_hub_reference_reads_the_hf_cache_snapshot(tmp_path, monkeypatch):
    # an HF cache laid out as huggingface_hub writes it: refs/main -> snapshots/<commit>/<subfolder>/...
    cache = tmp_path / "hub"
    commit = "a" * 40
    repo = cache / "models--nics-efc--C2C_Fuser"
    write(repo / "snapshots" / commit / "pair_Fuser")
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub._snapshot_download.constants.HF_HUB_CACHE", str(cache), raising=False)
    expected = fuser_sha256(repo / "snapshots" / commit / "pair_Fuser")
    by_string = load_fuser("hub:nics-efc/C2C_Fuser/pair_Fuser/final@main")
    by_dict = load_fuser({"repo": "nics-efc/C2C_Fuser", "subfolder": "pair_Fuser/final", "revision": "main"})
    assert by_string.sha256 == by_dict.sha256 == expected
    assert by_string.source == "hub:nics-efc/C2C_Fuser/pair_Fuser/final@main"


def test_a_truncated_projector_file_is_named(tmp_path):
    root = write(tmp_path / "f")
    pt = root / "final" / "projector_1.pt"
    pt.write_bytes(pt.read_bytes()[: pt.stat().st_size // 2])
    with pytest.raises(FuserError, match=r"projector_1\.pt: not a readable PyTorch state_dict .*truncated or corrupt"):
        load_fuser(root)


def test_nan_weights_are_refused_naming_the_file_and_key(tmp_path):
    root = write(tmp_path / "f")
    pt = root / "final" / "projector_2.pt"
    state = torch.load(pt, weights_only=True)
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key].clone().fill_(float("nan"))
    torch.save(state, pt)
    with pytest.raises(FuserError, match=rf"projector_2\.pt: weights \['{key}'\] hold NaN or Inf"):
        load_fuser(root)


@pytest.mark.parametrize("entry", [[], [[]], [[0]], "x", [["a", 0]], [[0, True]]])
def test_a_malformed_projector_config_entry_is_named(tmp_path, entry):
    root = write(tmp_path / "f")
    config = root / "final" / "projector_config.json"
    data = json.loads(config.read_text())
    data["0"]["1"]["1"] = entry
    config.write_text(json.dumps(data))
    with pytest.raises(FuserError, match=r"projector_config\.json: layer '1': expected a non-empty list"):
        load_fuser(root)


def test_plan_names_a_damaged_fuser_file_before_any_model_runs(tmp_path, capsys):
    from runner.__main__ import main

    root = write(tmp_path / "f")
    (root / "final" / "projector_0.pt").write_bytes(b"PK\x03\x04 truncated")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "schema: 1\nname: damaged\npair: {receiver: tiny:qwen3, sharer: tiny:qwen2}\n"
        f"fuser: {{path: '{root}'}}\neval: {{datasets: [mini]}}\n"
    )
    assert main(["plan", str(manifest), "--runs-dir", str(tmp_path / "runs")]) == 1
    err = capsys.readouterr().err
    assert "projector_0.pt: not a readable PyTorch state_dict" in err and "Traceback" not in err
