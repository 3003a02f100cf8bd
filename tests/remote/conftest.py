"""Recorded renders for tests/remote: `record(name, text)` compares against tests/remote/records/<name>.txt.

A missing record FAILS. Records are (re)written only with `pytest tests/remote --update-records`, and the
rewritten files must be reviewed in the diff before committing (otherwise a first run could never fail).
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

RECORDS = Path(__file__).parent / "records"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-records", action="store_true", default=False, help="rewrite tests/remote/records/*.txt")


@pytest.fixture
def record(request: pytest.FixtureRequest):
    update = bool(request.config.getoption("--update-records", default=False))

    def check(name: str, text: str) -> None:
        path = RECORDS / f"{name}.txt"
        if update:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            return
        if not path.exists():
            pytest.fail(f"record {path} is missing; write it with `pytest tests/remote --update-records` and review it")
        expected = path.read_text(encoding="utf-8")
        if text != expected:
            diff = difflib.unified_diff(
                expected.splitlines(), text.splitlines(), f"records/{name}.txt", "rendered", lineterm=""
            )
            pytest.fail(f"rendered text differs from {path} (line by line):\n" + "\n".join(diff), pytrace=False)

    return check
