"""Manifest loading: the bad-manifest corpus, ${VAR} expansion, include, error lines, the validate CLI.

python -m pytest tests/runner/test_manifest.py -q
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from runner.__main__ import main
from runner.manifest import ManifestError, expand, load_manifest
from runner.schema import Manifest, Section

REPO_ROOT = Path(__file__).resolve().parents[2]
BAD_DIR = REPO_ROOT / "tests" / "data" / "manifests" / "bad"
BAD_FILES = sorted(BAD_DIR.glob("*.yaml"))
MINIMAL = """schema: 1
name: t_minimal
pair: {receiver: tiny:qwen3, sharer: tiny:qwen2}
fuser: {path: "tiny:qwen3+qwen2"}
eval: {datasets: [mini]}
"""


def expected(path: Path) -> str:
    """The `# expect: LINE: field[: message]` substring on the first line of a corpus file."""
    first = path.read_bytes().split(b"\n", 1)[0].decode("ascii")
    assert first.startswith("# expect: "), f"{path.name}: first line must be '# expect: LINE: field'"
    return first.removeprefix("# expect: ")


@pytest.fixture(scope="module")
def validate_bad_corpus() -> subprocess.CompletedProcess[str]:
    """One `python -m runner validate` over the whole corpus (one subprocess per file would take minutes)."""
    env = {k: v for k, v in os.environ.items() if k not in ("QC2C_TEST_SURELY_UNDEFINED", "HF_TOKEN")}
    files = [str(p.relative_to(REPO_ROOT)) for p in BAD_FILES]
    return subprocess.run(
        [sys.executable, "-m", "runner", "validate", *files],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_bad_corpus_has_at_least_30_distinct_cases():
    assert len(BAD_FILES) >= 30
    assert len({expected(p) for p in BAD_FILES}) == len(BAD_FILES)


@pytest.mark.parametrize("path", BAD_FILES, ids=[p.stem for p in BAD_FILES])
def test_bad_manifest_is_refused_with_line_and_field(path: Path, validate_bad_corpus, capsys):
    result = validate_bad_corpus
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    rel = str(path.relative_to(REPO_ROOT))
    mine = [line for line in result.stderr.splitlines() if line.startswith(f"{rel}:")]
    assert len(mine) == 1, f"one problem per corpus file, got {mine}"
    assert f"{rel}:{expected(path)}" in mine[0]
    # the same file alone, in-process: exit 2 and the same line
    assert main(["validate", str(path)]) == 2
    assert expected(path) in capsys.readouterr().err


def write(tmp_path: Path, text: str, name: str = "m.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_minimal_manifest_loads_with_defaults(tmp_path):
    m = load_manifest(write(tmp_path, MINIMAL))
    assert m.kind == "eval" and m.kv.quant.scheme == "int8" and m.eval.baselines == ("receiver", "c2c_fp16")
    assert m.model_dump(by_alias=True)["schema"] == 1


def test_every_problem_is_reported_in_file_order(tmp_path):
    text = MINIMAL.replace("name: t_minimal", "name: Bad") + "kv:\n  quant: {scheme: int3}\nruntime: {seed: -1}\n"
    with pytest.raises(ManifestError) as info:
        load_manifest(write(tmp_path, text))
    lines = [p.split(": ")[0].rsplit(":", 1)[1] + ":" + p.split(": ")[1] for p in info.value.problems]
    assert lines == ["2:name", "7:kv.quant.scheme", "8:runtime.seed"]


def test_variables_expand_with_value_and_default(tmp_path, monkeypatch):
    monkeypatch.setenv("QC2C_T_ROOT", "/ckpt")
    monkeypatch.delenv("QC2C_T_UNSET", raising=False)
    text = MINIMAL.replace("tiny:qwen3+qwen2", "${QC2C_T_ROOT}/fuser_${QC2C_T_UNSET:-m7}/final")
    assert load_manifest(write(tmp_path, text)).fuser.path == "/ckpt/fuser_m7/final"


def test_undefined_variable_names_variable_field_and_line(tmp_path, monkeypatch):
    monkeypatch.delenv("QC2C_T_UNSET", raising=False)
    path = write(tmp_path, MINIMAL.replace("tiny:qwen3+qwen2", "${QC2C_T_UNSET}/final"))
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert info.value.problems == [
        f"{path}:4: fuser.path: environment variable QC2C_T_UNSET is not set (set it, or write ${{QC2C_T_UNSET:-default}})"
    ]


def test_expand_replaces_every_occurrence_and_reports_each_missing_name():
    reported: list[str] = []
    out = expand("${A}-${A}-${B:-x}-${C}-${D:-}", {"A": "1"}, reported.append)
    assert out == "1-1-x-${C}-"
    assert len(reported) == 1 and "C is not set" in reported[0]


def test_variables_in_keys_are_not_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("QC2C_T_KEY", "receiver")
    text = MINIMAL.replace("pair: {receiver: tiny:qwen3, sharer: tiny:qwen2}", "pair:\n  ${QC2C_T_KEY}: tiny:qwen3")
    with pytest.raises(ManifestError, match=r"pair\.\$\{QC2C_T_KEY\}: unknown field"):
        load_manifest(write(tmp_path, text))


def test_include_merges_sections_and_errors_name_the_file_that_holds_the_value(tmp_path):
    tmp_path = tmp_path / "manifests"  # a folder named manifests is the tree that includes may reach
    tmp_path.mkdir()
    write(tmp_path, MINIMAL + "kv:\n  quant: {scheme: int4, group_size: 0}\n", "base.yaml")
    sub = tmp_path / "sub"
    sub.mkdir()
    path = write(sub, "include: ../base.yaml\nname: t_child\nkv:\n  selection: {method: back, keep: 2.0}\n")
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert info.value.problems == [
        f"{tmp_path / 'base.yaml'}:7: kv.quant.group_size: Input should be greater than 0 (found: 0)",
        f"{path}:4: kv.selection.keep: Input should be less than or equal to 1 (found: 2.0)",
    ]
    fixed = path.read_text().replace("keep: 2.0", "keep: 0.5")
    write(tmp_path, MINIMAL + "kv:\n  quant: {scheme: int4}\n", "base.yaml")
    m = load_manifest(write(sub, fixed, "child.yaml"))
    assert (m.name, m.kv.quant.scheme, m.kv.selection.keep) == ("t_child", "int4", 0.5)


def test_include_cycle_is_refused(tmp_path):
    write(tmp_path, "include: b.yaml\n", "a.yaml")
    write(tmp_path, "include: a.yaml\n", "b.yaml")
    with pytest.raises(ManifestError, match="includes itself"):
        load_manifest(tmp_path / "a.yaml")


def test_load_manifest_refuses_a_sweep(tmp_path):
    with pytest.raises(ManifestError, match=r"m.yaml:6: grid: this is a sweep"):
        load_manifest(write(tmp_path, MINIMAL + "grid:\n  kv.quant.scheme: [int8]\n"))


def test_layer_range_and_list_are_the_same_layers(tmp_path):
    base = MINIMAL + "kv:\n  precision:\n    overrides:\n      - {layers: LAYERS, scheme: fp16}\n"
    ranged = load_manifest(write(tmp_path, base.replace("LAYERS", '"24-27"'), "a.yaml"))
    listed = load_manifest(write(tmp_path, base.replace("LAYERS", "[24, 25, 26, 27]"), "b.yaml"))
    assert ranged.kv.precision.overrides[0].layers == (24, 25, 26, 27)
    assert ranged.kv == listed.kv


def test_json_dump_validates_back_to_the_same_manifest():
    """Other parts read `model_dump(mode="json", by_alias=True)`; it must be a valid manifest itself."""
    m = load_manifest(REPO_ROOT / "tests" / "data" / "manifests" / "good" / "good_everything.yaml")
    assert Manifest.model_validate(m.model_dump(mode="json", by_alias=True)) == m


def test_every_section_forbids_extra_fields_and_is_frozen():
    sections = Section.__subclasses__()
    assert Manifest in sections and len(sections) >= 10
    for cls in sections:
        assert cls.model_config["extra"] == "forbid" and cls.model_config["frozen"], cls.__name__


def test_validate_cli_reports_missing_path_and_empty_directory(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.yaml"), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'nope.yaml'}: no such file or directory" in err
    assert f"{tmp_path}: no *.yaml manifests in this directory" in err


def test_validate_cli_refuses_duplicate_names(tmp_path, capsys):
    write(tmp_path, MINIMAL, "a.yaml")
    write(tmp_path, "# same name again\n" + MINIMAL, "b.yaml")
    assert main(["validate", str(tmp_path)]) == 2
    assert (
        f"{tmp_path / 'b.yaml'}:3: name: 't_minimal' is already used by {tmp_path / 'a.yaml'}"
        in capsys.readouterr().err
    )


def test_validate_cli_counts_manifests_on_success(tmp_path, capsys):
    write(tmp_path, MINIMAL, "a.yaml")
    assert main(["validate", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == "ok: 1 manifests (1 files)"


WEIRD_VALUES = [None, [], {}, "", "x", -1, 0, 1.5, True, [1, "a"], {"k": "v"}, "${QC2C_T_UNSET}", 10**30]


def _paths(data, prefix=()):
    for key, value in data.items():
        yield (*prefix, key)
        if isinstance(value, dict):
            yield from _paths(value, (*prefix, key))


@settings(max_examples=60)
@given(st.data())
def test_any_wrong_value_anywhere_gives_file_line_field_problems_never_a_crash(tmp_path_factory, data):
    """Mutate 1-3 fields of smoke.yaml to odd values: the loader either accepts or lists well-formed problems."""
    smoke = YAML(typ="safe").load((REPO_ROOT / "manifests" / "smoke.yaml").read_text())
    paths = sorted(_paths(smoke)) + [("kv", "quant", "extra"), ("new_section",)]
    for loc in data.draw(st.lists(st.sampled_from(paths), min_size=1, max_size=3)):
        node = smoke
        for part in loc[:-1]:
            node = node[part] if isinstance(node.get(part), dict) else node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node[loc[-1]] = data.draw(st.sampled_from(WEIRD_VALUES))
    path = tmp_path_factory.mktemp("fuzz") / "m.yaml"
    with path.open("w") as f:
        YAML(typ="safe").dump(smoke, f)
    try:
        load_manifest(path)
    except ManifestError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert re.fullmatch(rf"{re.escape(str(path))}:\d+: [^ ]+: .+", problem), problem
