"""python -m pytest tests/integration/test_smoke_run.py -q

End to end through `python -m runner run` in a subprocess on the tiny pair and the bundled mini set:
run folder contents, results, registry, skip on re-run, both protocols, sample-error failure, secret
redaction, offline-miss error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qc2c.eval.datasets import load_mc
from runner.results import load_result

REPO = Path(__file__).resolve().parents[2]
FAKE_TOKEN = "hf_FAKEtokenVALUE_do_not_leak_0123456789"

MANIFEST = """\
schema: 1
name: {name}
milestone: itest
pair: {{receiver: "tiny:qwen3", sharer: "tiny:qwen2"}}
fuser: {{path: "tiny:qwen3+qwen2"}}
kv:
  quant: {{scheme: int4, group_size: 32}}
  selection: {{method: knorm, keep: 0.5}}
eval:
  datasets: [{dataset}]
  limit: {limit}
  protocol: {protocol}
  batch_size: {batch_size}
  baselines: [receiver, sharer, c2c_fp16]
{extra_eval}runtime: {{device: cpu, dtype: float32, container: native, max_sample_errors: {max_errors}}}
description: "{description}"
"""


def write_manifest(
    tmp: Path,
    name: str,
    *,
    dataset: str = "mini",
    limit: int = 10,
    protocol: str = "logits",
    batch_size: int = 4,
    max_errors: int = 0,
    extra_eval: str = "",
    description: str = "",
) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(
        MANIFEST.format(
            name=name,
            dataset=dataset,
            limit=limit,
            protocol=protocol,
            batch_size=batch_size,
            max_errors=max_errors,
            extra_eval=extra_eval,
            description=description,
        )
    )
    return path


def runner_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "QC2C_RUNS_DIR": str(tmp / "runs"), "OMP_NUM_THREADS": "1", **extra}
    env.pop("QC2C_IN_CONTAINER", None)
    return env


def run_cli(tmp: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        cwd=REPO,
        env=env or runner_env(tmp),
        capture_output=True,
        text=True,
        timeout=300,
    )


def run_dir_of(tmp: Path) -> Path:
    dirs = [p for p in (tmp / "runs" / "itest").iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(dirs) == 1, dirs
    return dirs[0]


def test_smoke_run_writes_the_run_folder_and_skips_when_complete(tmp_path: Path) -> None:
    path = write_manifest(tmp_path, "itest-logits")
    done = run_cli(tmp_path, "run", str(path))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "compressed" in done.stdout and "c2c_fp16" in done.stdout  # the summary table
    run_dir = run_dir_of(tmp_path)
    for rel in (
        "manifest.yaml",
        "provenance.json",
        "logs/run.log",
        "progress/mini.jsonl",
        "results/mini.json",
        "status.json",
    ):
        assert (run_dir / rel).is_file(), rel
    result = load_result(run_dir / "results" / "mini.json")
    assert set(result.settings) == {"compressed", "receiver", "sharer", "c2c_fp16"}
    assert all(s.n == 10 and s.n_errors == 0 for s in result.settings.values())
    assert result.settings["compressed"].bytes.mean > 0 and result.fuser.loaded
    assert result.dataset.fingerprint == load_mc("mini", limit=10).fingerprint
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "complete" and status["datasets"]["mini"]["n_done"] == 10
    registry = json.loads((tmp_path / "runs" / "registry.json").read_text())
    assert registry[result.run_key]["status"] == "complete"
    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert provenance["fuser"]["sha256"] == result.fuser.sha256 and provenance["models"]["receiver"]["config_sha256"]
    assert {m["attn_implementation"] for m in provenance["models"].values()} == {"sdpa"}
    from runner.manifest import load_manifest

    assert load_manifest(run_dir / "manifest.yaml").run_key() == result.run_key  # the resolved copy round-trips

    again = run_cli(tmp_path, "run", str(path))
    assert again.returncode == 0 and "skip" in again.stderr
    assert (run_dir / "results" / "mini.json").read_text() == (run_dir / "results" / "mini.json").read_text()


def test_generate_protocol_end_to_end(tmp_path: Path) -> None:
    path = write_manifest(tmp_path, "itest-gen", protocol="generate", limit=6, extra_eval="  max_new_tokens: 4\n")
    done = run_cli(tmp_path, "run", str(path))
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in (run_dir_of(tmp_path) / "progress" / "mini.jsonl").read_text().splitlines()]
    assert len(records) == 6
    assert all("text" in r["settings"]["c2c_fp16"] for r in records)
    result = load_result(run_dir_of(tmp_path) / "results" / "mini.json")
    assert result.protocol == "generate"


def _dataset_with_a_bad_item(tmp: Path, n_good: int = 5) -> Path:
    """openbookqa-schema local files: good rows from the mini set + one row whose letters repeat, so the
    logits protocol cannot tell two options apart (option_token_ids raises for that sample only)."""
    folder = tmp / "data" / "openbookqa"
    folder.mkdir(parents=True)
    rows = [
        {
            "id": it.id,
            "question_stem": it.question,
            "choices": {"text": it.choices, "label": it.labels},
            "answerKey": it.answer,
        }
        for it in load_mc("mini", limit=n_good).items
    ]
    rows.insert(
        2,
        {
            "id": "bad-1",
            "question_stem": "Which?",
            "choices": {"text": ["x", "y"], "label": ["A", "A"]},
            "answerKey": "A",
        },
    )
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp / "data"


def test_sample_errors_above_the_limit_fail_the_run(tmp_path: Path) -> None:
    data = _dataset_with_a_bad_item(tmp_path)
    path = write_manifest(tmp_path, "itest-err", dataset="openbookqa", limit=6)
    done = run_cli(tmp_path, "run", str(path), env=runner_env(tmp_path, QC2C_DATA_DIR=str(data)))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "max_sample_errors" in done.stderr and "bad-1" in done.stderr
    run_dir = run_dir_of(tmp_path)
    records = [json.loads(line) for line in (run_dir / "progress" / "openbookqa.jsonl").read_text().splitlines()]
    bad = [r for r in records if r["id"] == "bad-1"][0]
    assert "distinct first tokens" in bad["error"]
    assert json.loads((run_dir / "status.json").read_text())["state"] == "failed"
    registry = json.loads((tmp_path / "runs" / "registry.json").read_text())
    assert [e["status"] for e in registry.values()] == ["failed"]
    assert not (run_dir / "results").exists()


def test_allowed_sample_errors_complete_and_are_counted(tmp_path: Path) -> None:
    data = _dataset_with_a_bad_item(tmp_path)
    path = write_manifest(tmp_path, "itest-err-ok", dataset="openbookqa", limit=6, max_errors=1)
    done = run_cli(tmp_path, "run", str(path), env=runner_env(tmp_path, QC2C_DATA_DIR=str(data)))
    assert done.returncode == 0, done.stderr
    result = load_result(run_dir_of(tmp_path) / "results" / "openbookqa.json")
    assert result.settings["receiver"].n_errors == 1 and result.settings["receiver"].n == 6


def test_secret_values_never_reach_the_run_folder(tmp_path: Path) -> None:
    path = write_manifest(tmp_path, "itest-secret", limit=4, description="note ${QC2C_NOTE}")  # same value as HF_TOKEN
    env = runner_env(tmp_path, HF_TOKEN=FAKE_TOKEN, MY_API_KEY=FAKE_TOKEN + "x", QC2C_NOTE=FAKE_TOKEN)
    done = run_cli(tmp_path, "run", str(path), env=env)
    assert done.returncode == 0, done.stderr
    assert FAKE_TOKEN not in done.stdout + done.stderr
    files = [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]
    assert any(p.name == "run.log" for p in files) and len(files) >= 7
    for p in files:
        assert FAKE_TOKEN.encode() not in p.read_bytes(), p


def test_model_missing_offline_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "offline.yaml"
    path.write_text(
        "schema: 1\nname: itest-offline\nmilestone: itest\n"
        "pair: {receiver: Qwen/Qwen3-0.6B, sharer: Qwen/Qwen2.5-0.5B-Instruct}\n"
        "eval: {datasets: [mini], limit: 2, baselines: [receiver]}\n"
        "runtime: {device: cpu, dtype: float32, container: native}\n"
    )
    env = runner_env(tmp_path, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), HF_HUB_CACHE=str(tmp_path / "hf/hub"))
    done = run_cli(tmp_path, "run", str(path), env=env)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "Qwen/Qwen3-0.6B" in done.stderr and "prefetch" in done.stderr


def test_bad_manifest_exits_2_with_file_line(tmp_path: Path) -> None:
    path = write_manifest(tmp_path, "itest-bad", batch_size=0)
    done = run_cli(tmp_path, "run", str(path))
    assert done.returncode == 2 and f"{path}:" in done.stderr and "eval.batch_size" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow  # four runner processes
@pytest.mark.parametrize("why", ["fuser was wrong"])
def test_invalidated_run_is_rerun_from_scratch(tmp_path: Path, why: str) -> None:
    path = write_manifest(tmp_path, "itest-inv", limit=4)
    assert run_cli(tmp_path, "run", str(path)).returncode == 0
    key = next(iter(json.loads((tmp_path / "runs" / "registry.json").read_text())))
    inv = run_cli(tmp_path, "registry", "invalidate", key[:10], "--why", why)
    assert inv.returncode == 0, inv.stderr
    plan = run_cli(tmp_path, "plan", str(path), "--json", "--no-preflight")
    assert json.loads(plan.stdout)["decision"] == "rerun"
    assert run_cli(tmp_path, "run", str(path)).returncode == 0
    assert (tmp_path / "runs" / "itest" / ".superseded").is_dir()
