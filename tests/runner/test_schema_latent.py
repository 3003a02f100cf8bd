# python -m pytest tests/runner/test_schema_latent.py -q
from __future__ import annotations

import copy

import pytest
from pydantic import ValidationError

from runner.schema import Manifest

TRAIN = {
    "schema": 1,
    "name": "lt",
    "kind": "train",
    "pair": {"receiver": "demo:receiver", "sharer": "demo:sharer_llama"},
    "train": {"method": "latent", "latent": {"stage": "a"}},
}
EVAL = {
    "schema": 1,
    "name": "le",
    "kind": "eval",
    "pair": {"receiver": "demo:receiver", "sharer": "demo:sharer"},
    "eval": {"datasets": ["demo"], "baselines": ["receiver", "latent", "latent_int4"], "latent": {"from_run": "lt"}},
}


def errors(data):
    with pytest.raises(ValidationError) as exc:
        Manifest.model_validate(data)
    return str(exc.value)


def with_(base, path, value):
    data = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = data
    for p in parents:
        node = node[p]
    if value is None:
        node.pop(last)
    else:
        node[last] = value
    return data


def test_latent_manifests_validate_without_a_fuser_or_train_data():
    assert Manifest.model_validate(TRAIN).train.latent.config().d_z == 64
    assert Manifest.model_validate(EVAL).eval.latent.from_run == "lt"


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("train.latent", None, "required with method: latent"),
        ("train.latent.stage", "b", "required with stage: b"),
        ("train.latent.d_z", 30, "must divide d_z"),
        ("train.latent.deep_prefix_len", 8, "only used with deep_prefix"),
        ("train.data", {"jsonl": "x.jsonl"}, "not used with method: latent"),
        ("train.method", "c2c", "only used with method: latent"),
    ],
)
def test_bad_latent_train_sections_are_refused(path, value, message):
    assert message in errors(with_(TRAIN, path, value))


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("eval.latent", None, "required by latent, latent_int4"),
        ("eval.datasets", ["openbookqa"], "allowed: [demo]"),
        ("eval.baselines", ["receiver"], "only used by the settings"),
        ("eval.latent", {"from_run": "lt", "path": "x"}, "exactly one of from_run / path"),
    ],
)
def test_bad_latent_eval_sections_are_refused(path, value, message):
    assert message in errors(with_(EVAL, path, value))


def test_latent_fields_change_only_latent_run_keys():
    c2c = {**TRAIN, "train": {"data": {"jsonl": "x.jsonl"}}}
    explicit = {**TRAIN, "train": {"data": {"jsonl": "x.jsonl"}, "method": "c2c"}}
    assert Manifest.model_validate(c2c).run_key() == Manifest.model_validate(explicit).run_key()
    a = Manifest.model_validate(TRAIN).run_key()
    b = Manifest.model_validate(with_(TRAIN, "train.latent.d_z", 32)).run_key()
    assert a != b
