"""python -m pytest tests/runner/test_bounded_input.py -q

A manifest is untrusted input: loading it is bounded (file size, nesting, alias expansion, grid size,
include chain), `include:` stays in the manifests' tree and errors never echo another file's content.
Every `runner` command answers bad input with `file:line: field: message` lines and exit 2, never a
traceback (the bad corpus in tests/data/manifests/bad holds one file per bound as well).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.__main__ import main
from runner.manifest import MAX_FILE_BYTES, ManifestError, load_manifest
from runner.sweep import expand_file

REPO = Path(__file__).resolve().parents[2]
BAD = REPO / "tests" / "data" / "manifests" / "bad"
MINIMAL = """schema: 1
name: {name}
pair: {{receiver: tiny:qwen3, sharer: tiny:qwen2}}
fuser: {{path: "tiny:qwen3+qwen2"}}
eval: {{datasets: [mini]}}
"""


@pytest.mark.parametrize("command", ["run", "plan", "validate"])
@pytest.mark.parametrize("case", ["alias_bomb", "deep_flow_nesting", "deep_block_nesting", "grid_too_large"])
def test_every_command_refuses_unbounded_input_in_one_line(case: str, command: str, capsys) -> None:
    t0 = time.monotonic()
    assert main([command, str(BAD / f"{case}.yaml")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count(f"{case}.yaml:") == 1, err
    assert time.monotonic() - t0 < 20  # bounded: refused before anything is expanded


def test_a_laughs_file_one_level_deeper_than_the_corpus_is_refused_as_fast(tmp_path: Path) -> None:
    levels = ["a: &a [" + ", ".join(["lol"] * 9) + "]"]
    for prev, name in zip("abcdefghijk", "bcdefghijkl"):
        levels.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")  # 9**12 values if expanded
    path = tmp_path / "lol.yaml"
    path.write_text(MINIMAL.format(name="lol") + "\n".join(levels) + "\n")
    t0 = time.monotonic()
    with pytest.raises(ManifestError, match="expands to more than"):
        load_manifest(path)
    assert time.monotonic() - t0 < 5


def test_a_file_larger_than_the_bound_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(MINIMAL.format(name="big") + "#" * MAX_FILE_BYTES + "\n")
    with pytest.raises(ManifestError, match=r"big\.yaml:1: \(file\): \d+ bytes; a manifest is at most"):
        load_manifest(path)


def test_includes_stay_in_the_manifests_tree_and_never_echo_content(tmp_path: Path) -> None:
    tree = tmp_path / "manifests"
    (tree / "sweeps").mkdir(parents=True)
    (tree / "base.yaml").write_text(MINIMAL.format(name="base"))
    secret = tmp_path / "token.yaml"
    secret.write_text("hf_CANARYtokenVALUE0123456789\n")
    (tree / "token.yaml").write_text("hf_CANARYtokenVALUE0123456789\n")
    sweep = tree / "sweeps" / "s.yaml"
    sweep.write_text("include: ../base.yaml\nname: s\ngrid:\n  eval.batch_size: [1, 2]\n")
    assert len(expand_file(sweep)) == 2  # the shipped layout: a sweep includes ../<base>.yaml
    for include, why in [
        ("../../token.yaml", "leaves"),
        (str(secret), "must be a relative path"),
        ("~/x.yaml", "must be a relative path"),
        ("../token.yaml", "a single value"),  # inside the tree, but not a manifest: its value is not shown
    ]:
        sweep.write_text(f"include: {include}\nname: s\n")
        with pytest.raises(ManifestError) as info:
            expand_file(sweep)
        assert why in str(info.value) and "CANARY" not in str(info.value), str(info.value)


def test_a_long_include_chain_is_refused(tmp_path: Path) -> None:
    tree = tmp_path / "manifests"
    tree.mkdir()
    (tree / "m0.yaml").write_text(MINIMAL.format(name="m0"))
    for i in range(1, 12):
        (tree / f"m{i}.yaml").write_text(f"include: m{i - 1}.yaml\nname: m{i}\n")
    assert load_manifest(tree / "m5.yaml").name == "m5"
    with pytest.raises(ManifestError, match="more than 8 files in one include chain"):
        load_manifest(tree / "m11.yaml")


def test_the_cli_boundary_turns_any_escaped_error_into_one_line() -> None:
    code = (
        "import runner.cli.validate as v, runner.__main__ as m, sys\n"
        "def boom(args): raise RuntimeError('first line\\nsecond line')\n"
        "v.run = boom\n"
        "sys.exit(m.main(['validate', 'x']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip() == "runner validate: RuntimeError: first line"
