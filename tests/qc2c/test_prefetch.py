"""Prefetch CLI: argument parsing, offline behaviour (no hub here), token values never printed.

python -m pytest tests/qc2c/test_prefetch.py -q
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from qc2c.prefetch import build_parser, main, redact

REPO_ROOT = Path(__file__).resolve().parents[2]
FAKE_TOKEN = "hf_fakeTokenValue1234567890"


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """A fresh interpreter: huggingface_hub and datasets read HF_HUB_OFFLINE and HF_HOME at import."""
    env = {k: v for k, v in os.environ.items() if k != "QC2C_DATA_DIR"}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf"),
        HF_TOKEN=FAKE_TOKEN,
        QC2C_TINY_CACHE=str(tmp_path / "tiny"),
    )
    cmd = [sys.executable, "-m", "qc2c.prefetch", *args]
    return subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


def test_parses_models_with_a_revision():
    args = build_parser().parse_args(["models", "Qwen/Qwen3-0.6B", "tiny:qwen2", "--revision", "abc123"])
    assert (args.kind, args.refs, args.revision) == ("models", ["Qwen/Qwen3-0.6B", "tiny:qwen2"], "abc123")


def test_parses_datasets_with_the_default_split():
    args = build_parser().parse_args(["datasets", "openbookqa", "arc_challenge", "mmlu_redux"])
    assert (args.kind, args.names, args.split) == ("datasets", ["openbookqa", "arc_challenge", "mmlu_redux"], "test")


@pytest.mark.parametrize("argv", [[], ["models"], ["datasets"], ["weights", "x"]])
def test_incomplete_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    assert "usage: python -m qc2c.prefetch" in capsys.readouterr().err


def test_unknown_dataset_exits_2_with_a_suggestion(capsys):
    assert main(["datasets", "openbook", "arc"]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'openbook' (did you mean 'openbookqa'?" in err
    assert "unknown dataset 'arc'" in err


def test_redact_hides_secret_values(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    monkeypatch.setenv("WANDB_API_KEY", "abcd-1234")
    assert redact(f"url?token={FAKE_TOKEN}&k=abcd-1234") == "url?token=***&k=***"


def test_offline_model_miss_is_one_clear_line_per_item(tmp_path):
    out = _run(["models", "Qwen/Qwen3-0.6B", "Qwen/Qwen2.5-0.5B-Instruct"], tmp_path)
    assert out.returncode == 1, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("prefetch:")]
    assert len(lines) == 2
    assert lines[0].startswith("prefetch: model Qwen/Qwen3-0.6B: LocalEntryNotFoundError")
    assert "outgoing traffic has been disabled" in lines[0]
    assert "HF_TOKEN is set" in out.stderr
    assert "Traceback" not in out.stderr and FAKE_TOKEN not in out.stderr + out.stdout


def test_offline_dataset_miss_names_the_hub_id(tmp_path):
    out = _run(["datasets", "openbookqa", "mini"], tmp_path)
    assert out.returncode == 1, out.stderr
    assert "prefetch: dataset openbookqa: DatasetUnavailable: dataset 'openbookqa' (allenai/openbookqa" in out.stderr
    assert "mini is bundled" in out.stdout
    assert "Traceback" not in out.stderr and FAKE_TOKEN not in out.stderr + out.stdout


def test_tiny_models_are_built_not_downloaded(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("QC2C_TINY_CACHE", str(tmp_path))
    assert main(["models", "tiny:qwen2"]) == 0
    assert f"built tiny:qwen2 at {tmp_path}" in capsys.readouterr().out
    assert any(p.name.startswith("qwen2-") for p in tmp_path.iterdir())
