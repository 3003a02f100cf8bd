"""Shared test configuration: markers, hypothesis profiles, conformance data path, service requirements.

`python -m pytest -q` runs the default suite. Services (sshd, slurm, docker) skip with a reason when missing;
CI sets QC2C_REQUIRE=sshd,slurm,docker so that those skips become failures. The C2C conformance data ships
in tests/data/conformance/c2c, so the conformance tests run in every clone; missing data fails them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO_ROOT = Path(__file__).resolve().parents[1]

# Without CUDA the Triton codec kernels are tested in Triton's CPU interpreter, which triton decides when a
# kernel is defined: set it before any test module imports triton (collection imports them all first).
if "TRITON_INTERPRET" not in os.environ:
    import torch

    if not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"

settings.register_profile(
    "ci", derandomize=True, deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


CONFORMANCE_DATA = REPO_ROOT / "tests" / "data" / "conformance" / "c2c"


def conformance_dir() -> Path:
    """The C2C conformance data: $QC2C_CONFORMANCE when set, else tests/data/conformance/c2c (in the repository)."""
    env = os.environ.get("QC2C_CONFORMANCE")
    return Path(env) if env else CONFORMANCE_DATA


@pytest.fixture(scope="session")
def conformance() -> Path:
    """The conformance folder. Missing data fails the test: the data ships with the repository, never a skip."""
    path = conformance_dir()
    if not (path / "reference_float32.pt").is_file():
        pytest.fail(f"C2C conformance data not found at {path} (QC2C_CONFORMANCE or tests/data/conformance/c2c)")
    return path


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Mark every test that uses the conformance data, so `-m conformance` selects them."""
    for item in items:
        if "conformance" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.conformance)


def _required_services() -> set[str]:
    return {s.strip() for s in os.environ.get("QC2C_REQUIRE", "").split(",") if s.strip()}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Turn skips of required service tiers into failures, so CI cannot pass on skips."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and call.excinfo is not None:
        required = _required_services() & {m.name for m in item.iter_markers()}
        if required:
            report.outcome = "failed"
            report.longrepr = f"required service tier {sorted(required)} was skipped: {call.excinfo.value}"
