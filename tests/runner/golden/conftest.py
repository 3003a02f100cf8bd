"""Fixtures of the golden tests; the factory itself lives in golden_factory.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from golden_factory import RunFactory


@pytest.fixture
def run_factory(tmp_path: Path) -> RunFactory:
    return RunFactory(tmp_path)
