"""Ledger: atomic, locked, concurrent launches lose nothing. Run: .venv/bin/python -m pytest tests/remote/test_ledger.py -q"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor

import pytest

from remote import ledger


def _entry(i: int) -> ledger.LedgerEntry:
    return ledger.LedgerEntry(
        name=f"job-{i}",
        target="pod",
        kind="runpod",
        manifest="m.yaml",
        run_dirs=[f"runs/m/r{i}-0123456789"],
        job_dir=f"/w/runs/remote/job-{i}",
        handle=f"job-{i}",
    )


def _add(args: tuple[int, str]) -> None:
    i, path = args
    ledger.add_entry(_entry(i), ledger.Path(path))


def test_concurrent_adds_lose_nothing(tmp_path):
    path = tmp_path / "remote_jobs.json"
    with ProcessPoolExecutor(4) as pool:
        list(pool.map(_add, [(i, str(path)) for i in range(16)]))
    names = sorted(e.name for e in ledger.load_entries(path))
    assert names == sorted(f"job-{i}" for i in range(16))


def test_duplicate_job_refused_and_pulled_recorded(tmp_path):
    path = tmp_path / "remote_jobs.json"
    ledger.add_entry(_entry(1), path)
    with pytest.raises(ValueError, match="already in the ledger"):
        ledger.add_entry(_entry(1), path)
    ledger.mark_pulled("job-1", "pod", "runs/m/r1-0123456789", path)
    ledger.mark_pulled("job-1", "pod", "runs/m/r1-0123456789", path)
    assert ledger.load_entries(path)[0].pulled == ["runs/m/r1-0123456789"]
    assert ledger.select(ledger.load_entries(path), "pod", "job-1")[0].handle == "job-1"
    assert ledger.select(ledger.load_entries(path), "other") == []


def test_ledger_holds_no_environment_values(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value_123")
    path = tmp_path / "remote_jobs.json"
    ledger.add_entry(_entry(2), path)
    assert "hf_secret_value_123" not in path.read_text()
    assert set(json.loads(path.read_text())["jobs"][0]) == set(ledger.LedgerEntry.__dataclass_fields__)
