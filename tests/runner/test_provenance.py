"""python -m pytest tests/runner/test_provenance.py -q"""

from __future__ import annotations

import json
from pathlib import Path

from runner.provenance import REDACTED, collect, redact, secret_values

FAKE = "hf_fakeTOKENvalue1234567890"


def test_secret_values_match_token_key_secret_password_names() -> None:
    env = {
        "HF_TOKEN": FAKE,
        "AWS_SECRET": "s3cr3t-x",
        "DB_PASSWORD": "pw-12345",
        "API_KEY": "k-123456",
        "PATH": "/usr/bin",
        "SHORT_TOKEN": "1",
    }
    assert set(secret_values(env)) == {FAKE, "s3cr3t-x", "pw-12345", "k-123456"}


def test_redact_replaces_values_everywhere_and_secret_keys(monkeypatch) -> None:
    monkeypatch.setenv("HF_TOKEN", FAKE)
    doc = {
        "cmd": f"curl -H 'Authorization: {FAKE}'",
        "nested": [{"x": FAKE}],
        "MY_API_KEY": "anything",
        "run_key": "abc123",
    }
    out = redact(doc)
    assert FAKE not in json.dumps(out)
    assert json.dumps(out).count(REDACTED) == 3
    assert out["run_key"] == "abc123"


def test_collect_never_writes_the_token(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_TOKEN", FAKE)
    monkeypatch.setenv("QC2C_NOTE", f"contains {FAKE}")
    doc = collect(
        repo=Path(__file__).parents[2], device="cpu", run_key="k", models={}, fuser=None, datasets={}, container=None
    )
    text = json.dumps(doc)
    assert FAKE not in text
    assert doc["git"]["commit"] is None or len(doc["git"]["commit"]) == 40
    assert doc["packages"]["torch"]


def test_secret_looking_names_and_url_credentials_never_reach_provenance(monkeypatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "https://alice:CANARYpw99@hub.example.org/api?x=1&token=CANARYtok7")
    monkeypatch.setenv("HF_HUB_PASSWD", "CANARYpasswd1")
    monkeypatch.setenv("QC2C_SECRET_FILE_CONTENT", "CANARYsecret2")
    monkeypatch.setenv("HF_AUTH", "CANARYauth3")
    monkeypatch.setenv("QC2C_RUNS_DIR", "/scratch/runs")
    doc = collect(
        repo=Path(__file__).parents[2], device="cpu", run_key="k", models={}, fuser=None, datasets={}, container=None
    )
    assert "CANARY" not in json.dumps(doc)
    assert doc["env"]["HF_ENDPOINT"] == f"https://{REDACTED}@hub.example.org/api?x=1&token={REDACTED}"
    assert doc["env"]["QC2C_RUNS_DIR"] == "/scratch/runs" and doc["run_key"] == "k"
    assert (
        redact("see https://hub.example.org/a?b=c for run_key abc")
        == "see https://hub.example.org/a?b=c for run_key abc"
    )
