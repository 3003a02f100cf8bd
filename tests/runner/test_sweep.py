"""Sweep expansion: include + grid → one manifest per combination, derived names, grid errors with lines.

python -m pytest tests/runner/test_sweep.py -q
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runner.manifest import ManifestError
from runner.schema import NAME_PATTERN
from runner.sweep import derived_name, expand_file

REPO_ROOT = Path(__file__).resolve().parents[2]
BASE = """schema: 1
name: t_base
pair: {receiver: tiny:qwen3, sharer: tiny:qwen2}
fuser: {path: "tiny:qwen3+qwen2"}
eval: {datasets: [mini]}
kv:
  selection: {method: back}
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_grid_expands_to_every_combination_first_key_slowest(tmp_path):
    write(tmp_path / "base.yaml", BASE)
    sweep = write(
        tmp_path / "s.yaml",
        "include: base.yaml\nname: t_sweep\ngrid:\n  kv.selection.keep: [0.25, 0.5]\n  kv.quant.scheme: [int8, int4, nf4]\n",
    )
    manifests = expand_file(sweep)
    got = [(m.name, m.kv.selection.keep, m.kv.quant.scheme) for m in manifests]
    assert got == [
        ("t_sweep-keep_0.25-scheme_int8", 0.25, "int8"),
        ("t_sweep-keep_0.25-scheme_int4", 0.25, "int4"),
        ("t_sweep-keep_0.25-scheme_nf4", 0.25, "nf4"),
        ("t_sweep-keep_0.5-scheme_int8", 0.5, "int8"),
        ("t_sweep-keep_0.5-scheme_int4", 0.5, "int4"),
        ("t_sweep-keep_0.5-scheme_nf4", 0.5, "nf4"),
    ]
    assert {m.kv.selection.method for m in manifests} == {"back"}  # the base still applies
    assert len({m.run_key() for m in manifests}) == 6


def test_inline_sweep_creates_missing_sections(tmp_path):
    text = BASE + "grid:\n  kv.budget.bytes_per_sample: [1024, 4096]\n"
    manifests = expand_file(write(tmp_path / "s.yaml", text))
    assert [m.kv.budget.bytes_per_sample for m in manifests] == [1024, 4096]
    assert [m.name for m in manifests] == ["t_base-bytes_per_sample_1024", "t_base-bytes_per_sample_4096"]


def test_plain_manifest_expands_to_itself(tmp_path):
    (m,) = expand_file(write(tmp_path / "m.yaml", BASE))
    assert m.name == "t_base"


def test_unknown_grid_path_names_file_line_and_allowed_fields(tmp_path):
    path = write(tmp_path / "s.yaml", BASE + "grid:\n  kv.quant.scheme: [int8]\n  kv.quant.bits: [4, 8]\n")
    with pytest.raises(ManifestError) as info:
        expand_file(path)
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}:10: grid.kv.quant.bits: unknown field 'bits' in kv.quant (allowed: scheme,")


def test_grid_path_through_a_value_is_refused(tmp_path):
    path = write(tmp_path / "s.yaml", BASE + "grid:\n  kv.quant.scheme.bits: [4]\n")
    with pytest.raises(ManifestError, match=r"s.yaml:9: grid.kv.quant.scheme.bits: kv.quant.scheme has no fields"):
        expand_file(path)


def test_invalid_grid_value_points_at_the_grid_line(tmp_path):
    path = write(tmp_path / "s.yaml", BASE + "grid:\n  kv.selection.keep: [0.5, 1.5]\n")
    with pytest.raises(ManifestError) as info:
        expand_file(path)
    assert info.value.problems == [f"{path}:9: kv.selection.keep: Input should be less than or equal to 1 (found: 1.5)"]


def test_grid_keys_with_the_same_last_part_use_the_whole_path():
    name = derived_name("t", {("kv", "selection", "seed"): 1, ("runtime", "seed"): 2})
    assert name == "t-kv.selection.seed_1-runtime.seed_2"


@pytest.mark.parametrize("value", ["Qwen/Qwen3-0.6B", [24, 25], {"a": "B C"}, None, True, 1e-4])
def test_derived_names_match_the_name_pattern(value):
    assert re.fullmatch(NAME_PATTERN, derived_name("t_base", {("pair", "receiver"): value}))


def test_shipped_scheme_sweep_covers_every_lossy_scheme_on_the_m2_base():
    manifests = expand_file(REPO_ROOT / "manifests" / "sweeps" / "m2_schemes.yaml")
    (int8,) = expand_file(REPO_ROOT / "manifests" / "m2_int8.yaml")
    assert [m.kv.quant.scheme for m in manifests] == ["int8", "int4", "int2", "nf4", "fp8_e4m3", "fp8_e5m2"]
    assert manifests[0].run_key() == int8.run_key()  # same content as m2_int8: the registry runs it once
