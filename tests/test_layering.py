"""Import-direction rules: remote → runner → qc2c. python -m pytest tests/test_layering.py -q"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "qc2c": {"runner", "remote", "ruamel", "fabric", "docker", "tests"},
    "runner": {"remote", "fabric", "tests"},
    "remote": {"tests"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_respects_import_direction(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"package {package} has no modules"
    bad = [
        f"{f.relative_to(ROOT)} imports {sorted(_imports(f) & FORBIDDEN[package])}"
        for f in files
        if _imports(f) & FORBIDDEN[package]
    ]
    assert not bad, "\n".join(bad)
