"""Shared test configuration: markers, hypothesis profiles, conformance data path, service requirements.

`python -m pytest -q` runs the default suite. Services (sshd, slurm, docker) skip with a reason when missing;
CI sets QC2C_REQUIRE=sshd,slurm,docker so that those skips become failures.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO_ROOT = Path(__file__).resolve().parents[1]

settings.register_profile(
    "ci", derandomize=True, deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def conformance_dir() -> Path | None:
    """../shared/conformance/c2c beside the checkout, or $QC2C_CONFORMANCE; None when absent."""
    env = os.environ.get("QC2C_CONFORMANCE")
    path = Path(env) if env else REPO_ROOT.parent / "shared" / "conformance" / "c2c"
    return path if (path / "reference_float32.pt").is_file() else None


@pytest.fixture(scope="session")
def conformance() -> Path:
    path = conformance_dir()
    if path is None:
        pytest.skip("conformance data not found (set QC2C_CONFORMANCE or place ../shared/conformance/c2c)")
    return path


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
