"""`python -m qc2c.bench gpu`: the device check runs on a bare machine (pydantic, ruamel.yaml, datasets, fabric and
the other packages GPU machines lack are hidden here), says so in one line without CUDA, and its CPU dry run goes
through every step to the JSON report and the table. Its GPU figures are only measured on a GPU (README)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from qc2c.bench import gpu

ROOT = Path(__file__).resolve().parents[3]
# in requirements.lock but not on the bare GPU machines (torch, transformers, safetensors, numpy, rich, pytest, triton)
HIDDEN = ("pydantic", "ruamel", "datasets", "fabric", "docker", "matplotlib", "hypothesis", "dockerfile_parse")

BARE = textwrap.dedent(
    f"""
    import importlib.machinery as machinery, runpy, sys
    HIDDEN = {HIDDEN!r}

    class Hiding(machinery.PathFinder):
        @classmethod
        def find_spec(cls, name, path=None, target=None):
            if name.partition(".")[0] in HIDDEN:
                return None  # as if not installed: importlib.util.find_spec answers None too
            return machinery.PathFinder.find_spec(name, path, target)

    sys.meta_path[:] = [Hiding if f is machinery.PathFinder else f for f in sys.meta_path]
    try:
        import pydantic  # noqa: F401
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit("the test's hiding does not work")
    sys.argv = ["qc2c.bench", "gpu", *sys.argv[1:]]
    runpy.run_module("qc2c.bench", run_name="__main__", alter_sys=True)
    """
)


def run_bare(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    script = tmp_path / "bare.py"
    script.write_text(BARE)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(script), *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the check would measure")
def test_without_cuda_it_says_so_in_one_line_and_exits_0(tmp_path: Path) -> None:
    proc = run_bare(tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device here" in lines[0] and "nothing measured" in lines[0]
    assert not (tmp_path / "gpu_check.json").exists()


def test_cpu_dry_run_goes_through_every_step_with_the_packages_hidden(tmp_path: Path) -> None:
    out = tmp_path / "out" / "gpu_check.json"
    proc = run_bare(tmp_path, "--cpu-dry-run", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] is True and "not GPU figures" in report["note"]
    assert set(report["steps"]) == set(gpu.STEPS)
    assert report["steps"]["kernel_bytes"]["all_equal"] and report["steps"]["kernel_bytes"]["cases"] > 70
    for name, step in report["steps"].items():
        assert "error" not in step, (name, step.get("traceback"))
    steps = report["steps"]
    assert steps["demo"]["items"] == 12 and set(steps["demo"]["agreement"]) == set(gpu.gpu_steps.DEMO_SETTINGS)
    rows = steps["geometry_eval"]["rows"]
    assert [r["batch"] for r in rows] == [1, 2] and all(r["int4"]["s_per_sample"] > 0 for r in rows)
    assert {r["scheme"] for r in steps["codec"]["kernels_only"]} == {"int8", "int4", "int2", "fp8_e4m3", "nf4"}
    assert all(r["bytes_equal_eager"] for r in steps["codec"]["kernels_only"])
    assert steps["train_max_batch"]["max_batch"] >= 1 and steps["train_max_batch"]["gradient_checkpointing"]
    assert {
        "demo_agreement",
        "int4_s_per_sample",
        "codec_share",
        "codec_bandwidth_int8",
        "codec_bandwidth_int4",
    } <= set(report["checks"])
    assert "CPU DRY RUN, not GPU figures" in proc.stdout and "check demo_agreement" in proc.stdout


def test_checks_compare_each_figure_with_its_target() -> None:
    steps = {
        "demo": {"agreement_all": 0.975},
        "geometry_eval": {"best_batch": 64, "rows": [
            {"batch": 1, "int4": {"s_per_sample": 0.3}, "codec_share": 0.01},
            {"batch": 64, "int4": {"s_per_sample": 0.015}, "codec_share": 0.05}]},
        "codec": {"kernels_only": [{"scheme": "int8", "bandwidth_fraction": 0.85, "bytes_equal_eager": True},
                                   {"scheme": "int4", "bandwidth_fraction": 0.79, "bytes_equal_eager": False}]},
    }  # fmt: skip
    c = gpu.checks(steps)
    assert not c["demo_agreement"]["met"] and c["int4_s_per_sample"]["met"] and not c["codec_share"]["met"]
    assert c["codec_bandwidth_int8"]["met"] and not c["codec_bandwidth_int4"]["met"]
    assert c["codec_bytes_equal_int8"]["met"] and not c["codec_bytes_equal_int4"]["met"]
    assert gpu.checks({}) == {}


def test_bandwidth_fraction_counts_the_bytes_each_side_moves() -> None:
    """int4 of a 16-bit cache at copy speed: 1.25x the copy's time, every byte at the copy's bandwidth."""
    assert gpu.gpu_steps.bandwidth_fraction(1000, 250, copy_s=1.0, trip_s=1.25) == pytest.approx(1.0)
    assert gpu.gpu_steps.bandwidth_fraction(1000, 500, copy_s=1.0, trip_s=3.0) == pytest.approx(0.5)


def test_a_failing_step_is_recorded_and_the_others_still_run(monkeypatch) -> None:
    def boom(sizes):
        raise RuntimeError("no luck")

    monkeypatch.setitem(gpu.STEPS, "demo", boom)
    monkeypatch.setitem(gpu.STEPS, "codec", lambda sizes: {"rows": [], "kernels_only": []})
    report = gpu.run(gpu.Sizes.dry(60), ["demo", "codec"], dry_run=True)
    assert report["steps"]["demo"]["error"] == "RuntimeError: no luck"
    assert "seconds" in report["steps"]["codec"] and "error" not in report["steps"]["codec"]
    assert "demo: ERROR RuntimeError: no luck" in gpu.table(report)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_the_codec_takes_the_triton_path() -> None:
    pytest.importorskip("triton", reason="triton is not installed on this CUDA machine")
    from qc2c.kv.kernels import cuda
    from qc2c.kv.quant import build_scheme

    x = torch.randn(2, 4, 2, 128, 64, device="cuda", dtype=torch.bfloat16)
    scheme = build_scheme("int4", axis="channel", group_size=32)
    y = scheme.decode(scheme.encode(x), torch.bfloat16)
    assert cuda.describe().startswith("Triton kernels") and y.shape == x.shape
