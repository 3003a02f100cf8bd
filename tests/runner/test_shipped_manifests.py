"""Every shipped manifest and every good corpus file validates; smoke.yaml documents every field;
the plug-in names the spec documents exist; `runner ls` reads the families.

python -m pytest tests/runner/test_shipped_manifests.py -q
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from qc2c.eval.datasets import DATASETS
from qc2c.kv.quant import SCHEMES
from qc2c.kv.selection import SELECTORS
from runner.__main__ import main
from runner.manifest import load_manifest
from runner.schema import Manifest
from runner.sweep import expand_file

REPO_ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = REPO_ROOT / "manifests"
SHIPPED = sorted(MANIFESTS.rglob("*.yaml"))
GOOD = sorted((REPO_ROOT / "tests" / "data" / "manifests" / "good").glob("*.yaml"))
SPEC = REPO_ROOT / "docs" / "manifest.md"


@pytest.mark.parametrize("path", SHIPPED + GOOD, ids=[str(p.relative_to(REPO_ROOT)) for p in SHIPPED + GOOD])
def test_manifest_file_validates(path: Path):
    assert expand_file(path)


def test_validate_cli_accepts_every_shipped_and_good_manifest():
    result = subprocess.run(
        [sys.executable, "-m", "runner", "validate", "manifests", "tests/data/manifests/good"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"ok: \d+ manifests \(\d+ files\)\n", result.stdout)


@pytest.mark.parametrize("path", [p for p in SHIPPED if p.parent == MANIFESTS], ids=lambda p: p.stem)
def test_shipped_manifest_is_named_after_its_file_and_has_a_header(path: Path):
    text = path.read_text()
    assert load_manifest(path).name == path.stem
    header = text.split("\nschema:", 1)[0]
    assert f"make run MANIFEST=manifests/{path.name}" in header or path.stem == "smoke"
    assert "Compare:" in header


def test_from_run_names_a_shipped_training_manifest():
    by_name = {m.name: m for p in SHIPPED for m in expand_file(p)}
    sources = {m.fuser.from_run for m in by_name.values() if m.fuser is not None and m.fuser.from_run}
    assert sources, "the shipped milestones evaluate trained fusers"
    for name in sources:
        assert name in by_name and by_name[name].kind == "train", name


def _fields(model: type[BaseModel]) -> set[str]:
    names = set()
    for name, info in model.model_fields.items():
        names.add(info.alias or name)
        todo = [info.annotation]
        while todo:
            ann = todo.pop()
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                names |= _fields(ann)
            todo += list(typing.get_args(ann))
    return names


def test_smoke_manifest_shows_every_field_of_the_schema():
    text = (MANIFESTS / "smoke.yaml").read_text()
    missing = sorted(f for f in _fields(Manifest) if not re.search(rf"\b{f}:", text))
    assert not missing, f"smoke.yaml (the reference manifest) does not mention: {missing}"


def _documented(key: str) -> list[str]:
    """The `a | b | c` list in the comment after `key:` in docs/manifest.md ("At a glance")."""
    for line in SPEC.read_text().splitlines():
        if re.match(rf"\s*{key}:", line) and "#" in line:
            return [v.strip().split()[0] for v in line.split("#", 1)[1].split("|")]
    raise AssertionError(f"{key}: not documented in {SPEC}")


@pytest.mark.parametrize(("key", "family"), [("scheme", SCHEMES), ("method", SELECTORS), ("datasets", DATASETS)])
def test_the_manifest_reference_documents_exactly_each_family(key, family):
    documented = _documented(key)
    assert sorted(documented) == sorted(family.names()), f"docs/manifest.md: {key}: update the list"


@pytest.mark.parametrize(("what", "family"), [("schemes", SCHEMES), ("selectors", SELECTORS), ("datasets", DATASETS)])
def test_ls_lists_the_family_names(what, family, capsys):
    assert main(["ls", what]) == 0
    assert capsys.readouterr().out.split() == list(family.names())


@pytest.mark.parametrize("path", SHIPPED + GOOD, ids=[str(p.relative_to(REPO_ROOT)) for p in SHIPPED + GOOD])
def test_json_dump_of_every_manifest_validates_to_the_same_manifest_and_key(path: Path):
    """Run folders store the resolved manifest; reloading it must give the same manifest and run key."""
    for m in expand_file(path):
        again = Manifest.model_validate(m.model_dump(mode="json", by_alias=True))
        assert again == m and again.run_key() == m.run_key()


def test_ls_runs_lists_registry_entries(tmp_path, capsys):
    key = "ab" * 32
    entry = {"status": "complete", "run_dir": "runs/smoke/smoke-abababab", "manifest": "smoke"}
    (tmp_path / "registry.json").write_text(json.dumps({key: entry}))
    assert main(["ls", "runs", "--runs-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "ababababab\tcomplete\tsmoke\truns/smoke/smoke-abababab\n"


def test_ls_runs_refuses_a_broken_registry(tmp_path, capsys):
    (tmp_path / "registry.json").write_text("{not json")
    assert main(["ls", "runs", "--runs-dir", str(tmp_path)]) == 2
    assert f"{tmp_path / 'registry.json'}:1: registry is not valid JSON" in capsys.readouterr().err
