"""The run key: a hash of the semantic manifest, blind to comments, names, descriptions and spelling.

python -m pytest tests/runner/test_run_key.py -q
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from runner.manifest import load_manifest

TEXT = """schema: 1
name: t_key
milestone: m2
description: first wording
pair: {receiver: tiny:qwen3, sharer: tiny:qwen2}
fuser: {path: "tiny:qwen3+qwen2"}
kv:
  quant: {scheme: int4}
  precision:
    overrides:
      - {layers: "2-3", scheme: fp16}
eval: {datasets: [mini]}
"""


def key(tmp_path: Path, text: str) -> str:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return load_manifest(path).run_key()


def test_run_key_is_sha256_of_canonical_json_without_labels(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(TEXT)
    m = load_manifest(path)
    data = m.model_dump(mode="json", by_alias=True)
    for label in ("name", "description", "milestone"):
        del data[label]
    for execution_choice in ("container", "max_sample_errors"):
        del data["runtime"][execution_choice]
    assert data["eval"].pop("text") is None  # eval.text at its default is left out: older keys stay valid
    assert data.pop("kd_cache") is None  # only kind: kd_cache has one: left out, so older keys stay valid
    assert data["eval"].pop("latent") is None  # eval.latent at its default (no latent setting) is left out too
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    assert m.run_key() == hashlib.sha256(canonical.encode()).hexdigest()


def test_comments_layout_and_labels_do_not_change_the_key(tmp_path):
    reference = key(tmp_path, TEXT)
    relabelled = TEXT.replace("t_key", "t_other").replace("first wording", "second").replace("m2", "custom")
    commented = "# a header\n" + TEXT.replace("{scheme: int4}", "\n    scheme: int4   # why\n")
    assert key(tmp_path, relabelled) == reference
    assert key(tmp_path, commented) == reference


def test_defaults_written_out_and_layer_spelling_do_not_change_the_key(tmp_path):
    reference = key(tmp_path, TEXT)
    explicit = TEXT.replace("{scheme: int4}", "{scheme: int4, symmetric: false, group_size: 64}").replace(
        '"2-3"', "[2, 3]"
    )
    assert key(tmp_path, explicit + "runtime: {seed: 0, dtype: bfloat16}\n") == reference


def test_every_semantic_change_changes_the_key(tmp_path):
    reference = key(tmp_path, TEXT)
    changes = [
        ("scheme: int4", "scheme: int8"),
        ('"2-3"', '"2-4"'),
        ("[mini]", "[mini, openbookqa]"),
        ("tiny:qwen2}", "tiny:qwen2, sharer_revision: v2}"),
        ('"tiny:qwen3+qwen2"', '"tiny:qwen3+llama"'),
    ]
    keys = {key(tmp_path, TEXT.replace(old, new)) for old, new in changes}
    keys.add(key(tmp_path, TEXT + "runtime: {seed: 1}\n"))
    assert reference not in keys and len(keys) == len(changes) + 1


def test_where_it_runs_and_error_tolerance_do_not_change_the_key(tmp_path):
    reference = key(tmp_path, TEXT)
    runtime = "\nruntime: {container: docker, max_sample_errors: 3}\n"
    assert key(tmp_path, TEXT.rstrip("\n") + runtime) == reference
    assert key(tmp_path, TEXT.rstrip("\n") + "\nruntime: {seed: 7}\n") != reference


def _key_without_convention(tmp_path, text: str) -> str:
    """The key as computed before kv.quant.convention existed (the same canonical JSON without the field)."""
    path = tmp_path / "m.yaml"
    path.write_text(text)
    m = load_manifest(path)
    exclude = {"name": True, "description": True, "milestone": True, "runtime": {"container", "max_sample_errors"}}
    exclude["kv"] = {"quant": {"convention"}}
    if m.eval is not None and m.eval.text is None:
        exclude["eval"] = {"text"}
    exclude["kd_cache"] = True  # a field newer than the key's rule; None outside kind: kd_cache
    if m.eval is not None and m.eval.latent is None:  # newer still: None without a latent setting
        exclude["eval"] = {*exclude.get("eval", ()), "latent"}
    data = m.model_dump(mode="json", by_alias=True, exclude=exclude)
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def test_the_quantizer_convention_is_in_the_key_where_it_changes_numbers(tmp_path):
    """kivi (the default) and observer are different keys; observer keeps the key its manifest had before the
    field existed (every earlier run was observer, so its run folders and golden rows stay valid); a kv without
    an asymmetric int scheme keeps its earlier key too."""
    kivi = key(tmp_path, TEXT)
    assert key(tmp_path, TEXT.replace("{scheme: int4}", "{scheme: int4, convention: kivi}")) == kivi
    observer_text = TEXT.replace("{scheme: int4}", "{scheme: int4, convention: observer}")
    observer = key(tmp_path, observer_text)
    assert observer != kivi
    assert observer == _key_without_convention(tmp_path, observer_text)
    assert kivi != _key_without_convention(tmp_path, TEXT)
    nf4 = TEXT.replace("{scheme: int4}", "{scheme: nf4}")
    assert key(tmp_path, nf4) == _key_without_convention(tmp_path, nf4)
