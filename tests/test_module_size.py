"""No module of qc2c/, runner/ or remote/ is over 400 lines: python -m pytest tests/test_module_size.py -q

400 lines is where a module usually holds more than one concern; split it by concern (as runner.lifecycle
was split from runner.execute) rather than raising the limit.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("qc2c", "runner", "remote")
MAX_LINES = 400


def test_no_module_is_over_the_limit() -> None:
    files = sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))
    assert len(files) > 50, "the packages were not found"
    sizes = {path: len(path.read_text(encoding="utf-8").splitlines()) for path in files}
    over = [f"{path.relative_to(ROOT)}: {n} lines" for path, n in sorted(sizes.items()) if n > MAX_LINES]
    assert not over, f"modules over {MAX_LINES} lines (split them by concern):\n" + "\n".join(over)
