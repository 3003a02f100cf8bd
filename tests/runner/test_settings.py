"""One source of truth for settings: the schema's defaults, qc2c's configs and the code that consumes them agree.

qc2c.config holds every default once; runner/schema.py takes its fields' defaults from there and builds the
configs (`Section.config()`); qc2c functions take the configs. These tests fail when a default is written a
second time somewhere and drifts. `python -m pytest tests/runner/test_settings.py -q`
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest

from qc2c import config as qc
from qc2c.config import from_json, kv_config
from qc2c.eval.score import SettingScorer
from qc2c.eval.settings import build_scorers
from qc2c.eval.text import TextScorer
from qc2c.kv import precision as kv_precision
from qc2c.kv.quant import build_scheme
from runner import schema
from runner.manifest import load_manifest
from runner.schema_types import Problems, Section, as_config

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "manifests").glob("*.yaml"))
REQUIRED = {  # the sections' fields without a default, at a valid value
    schema.Budget: {"bytes_per_sample": 1000},
    schema.Override: {"layers": "0-1", "scheme": "int4"},
    schema.TrainData: {"dataset": "org/data"},
    schema.Train: {"data": {"dataset": "org/data"}},
    schema.KDCacheSection: {"data": {"dataset": "org/data"}},
    schema.KDTrain: {"from_run": "a_kd_cache"},  # exactly one of from_run / path
}
SECTIONS = [cls for cls in vars(schema).values() if isinstance(cls, type) and issubclass(cls, Section)]
WITH_CONFIG = [cls for cls in SECTIONS if cls.config_type is not None]


def _default(cls: type, name: str) -> object:
    return cls.model_fields[name].get_default(call_default_factory=True)


def test_every_section_qc2c_consumes_names_its_config() -> None:
    names = {cls.__name__ for cls in WITH_CONFIG}
    assert names >= {"Quant", "Override", "Precision", "Selection", "Budget", "KV", "Text", "TrainData", "Projector"}
    assert names >= {"Optim", "Train", "Runtime"}


@pytest.mark.parametrize("section", WITH_CONFIG, ids=lambda c: c.__name__)
def test_schema_defaults_are_the_configs_defaults(section: type[Section]) -> None:
    """Each config field is a schema field with the same default (a nested section's default, as a config)."""
    config = section.config_type
    for f in dataclasses.fields(config):
        assert f.name in section.model_fields, f"{section.__name__} lacks {config.__name__}.{f.name}"
        if f.default is dataclasses.MISSING:
            assert section.model_fields[f.name].is_required(), f"{section.__name__}.{f.name} has a default"
            continue
        assert as_config(_default(section, f.name)) == f.default, f"{section.__name__}.{f.name}"


@pytest.mark.parametrize("section", WITH_CONFIG, ids=lambda c: c.__name__)
def test_a_section_of_defaults_builds_the_configs_defaults(section: type[Section]) -> None:
    given = REQUIRED.get(section, {})
    built = section.model_validate(given).config()
    runner_only = tuple(set(section.model_fields) - {f.name for f in dataclasses.fields(section.config_type)})
    data = section.model_validate(given).model_dump(mode="json")
    expected = from_json(section.config_type, data, ignore=runner_only)
    assert built == expected
    if not given:
        assert built == section.config_type()


def test_eval_defaults_are_the_eval_config_and_the_scorers_defaults() -> None:
    ev = schema.Eval.model_validate({"datasets": ["openbookqa"]})
    assert ev.config() == qc.EvalConfig()
    assert {f.name: _default(schema.Eval, f.name) for f in dataclasses.fields(qc.EvalConfig) if f.name != "text"} == {
        "protocol": qc.EvalConfig.protocol,
        "max_new_tokens": qc.EvalConfig.max_new_tokens,
        "batch_size": qc.EvalConfig.batch_size,
    }
    text = schema.Eval.model_validate({"datasets": ["openbookqa"], "text": {}, "baselines": ["text_answer"]})
    assert text.config().text == qc.TextConfig() == schema.Text().config()


def test_the_consuming_codes_own_defaults_agree_with_the_configs() -> None:
    """Keyword defaults in qc2c code for the same settings (a caller that leaves them out gets the schema's)."""
    scorers = inspect.signature(build_scorers).parameters
    assert scorers["text_max_new_tokens"].default == qc.TextConfig.max_new_tokens
    fields = {f.name: f.default for f in dataclasses.fields(TextScorer)}
    assert fields["text_max_new_tokens"] == qc.TextConfig.max_new_tokens
    assert {f.name: f.default for f in dataclasses.fields(SettingScorer)}[
        "max_new_tokens"
    ] == qc.EvalConfig.max_new_tokens
    scheme = inspect.signature(build_scheme).parameters
    for name in ("symmetric", "scale_dtype", "convention"):
        assert scheme[name].default == getattr(qc.QuantConfig, name), name
    assert scheme["axis"].default == qc.QuantConfig.value_axis


def test_the_schema_parses_layer_ranges_with_qc2cs_parser() -> None:
    assert schema.Override.model_validate({"layers": "24-27", "scheme": "fp16"}).layers == (24, 25, 26, 27)
    for bad, words in (("27-24", "reversed"), ([2, 1], "strictly increasing"), (5, "must be 'A-B'")):
        with pytest.raises(ValueError, match=words):
            schema.Override.model_validate({"layers": bad, "scheme": "fp16"})
        with pytest.raises(ValueError, match=words):
            kv_precision.parse_layer_range(bad)


@pytest.mark.parametrize(
    "selection, words",
    [
        ({"method": "all", "keep": 0.5}, "method 'all' sends every token"),
        ({"method": "front", "keep": 0.0}, "greater than 0"),
        ({"method": "front", "keep": 1.5}, "less than or equal to 1"),
        ({"method": "front", "window": 4}, "only used by method 'attention'"),
        ({"method": "front", "knorm_sign": "high"}, "only used by method 'knorm'"),
    ],
)
def test_the_schema_refuses_selection_settings_the_codec_no_longer_checks(selection: dict, words: str) -> None:
    with pytest.raises((ValueError, Problems), match=words):
        schema.KV.model_validate({"selection": selection})


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_shipped_manifests_build_the_same_configs_typed_and_from_json(path: Path) -> None:
    """The typed route (session, schema) and the JSON route (a train spec, a golden row) give one config."""
    m = load_manifest(path)
    data = m.model_dump(mode="json", by_alias=True)
    assert m.kv.config() == kv_config(data["kv"])
    if m.train is not None:
        assert m.train.config() == from_json(qc.TrainConfig, data["train"])
    if m.eval is not None:
        assert m.eval.config().protocol == m.eval.protocol
    assert m.runtime.config() == from_json(qc.RuntimeConfig, data["runtime"], ignore=("container", "max_sample_errors"))


def test_from_json_refuses_settings_that_are_no_field() -> None:
    with pytest.raises(ValueError, match=r"QuantConfig: unknown settings \['bits'\]"):
        kv_config({"quant": {"bits": 4}})
