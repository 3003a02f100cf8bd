"""`python -m qc2c.bench codec` on a small geometry: `python -m pytest tests/qc2c/bench/test_codec_bench.py -q`."""

from __future__ import annotations

import json
import subprocess
import sys

from qc2c.bench.__main__ import main as bench_main
from qc2c.bench.codec import main as codec_main
from qc2c.bench.quality import DATA_KINDS


def test_codec_bench_reports_round_trip_next_to_memcpy(capsys) -> None:
    rc = codec_main(
        "--batch 2 --tokens 16 --layers 3 --heads 1 --head-dim 8 --schemes int8 int4 fp16 --repeat 1 --json".split()
    )
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result["input_bytes"] == 2 * 3 * 2 * 1 * 16 * 8 * 2
    assert [r["scheme"] for r in result["rows"]] == ["int8", "int4", "fp16"]
    for row in result["rows"]:
        assert row["round_trip_gb_s"] > 0 and row["memcpy_gb_s"] > 0
        assert abs(row["ratio_to_memcpy"] - row["round_trip_gb_s"] / row["memcpy_gb_s"]) < 1e-9
    by_name = {r["scheme"]: r for r in result["rows"]}
    assert by_name["int4"]["compression"] > by_name["int8"]["compression"] > by_name["fp16"]["compression"]


def test_codec_bench_prints_a_table_by_default(capsys) -> None:
    assert codec_main("--batch 1 --tokens 4 --layers 1 --heads 1 --head-dim 4 --schemes nf4 --repeat 1".split()) == 0
    out = capsys.readouterr().out
    assert "memcpy" in out and "nf4" in out


def test_quality_reports_mse_per_scheme_and_convention(capsys) -> None:
    """One row per asymmetric convention of each int scheme (one for the others), keys and values apart, and the
    rankings the README states: kivi wins on fixed-sign outlier key channels, observer on heavy-tailed int2."""
    rc = codec_main(
        "--batch 1 --tokens 64 --layers 2 --heads 2 --head-dim 64 --schemes int2 fp16 --repeat 1 --json --quality".split()
    )
    assert rc == 0
    rows = json.loads(capsys.readouterr().out)["quality"]
    assert [(r["scheme"], r["convention"]) for r in rows] == [("int2", "kivi"), ("int2", "observer"), ("fp16", "—")]
    kivi, observer, fp16 = (r["mse"] for r in rows)
    assert set(kivi) == set(DATA_KINDS) and all(v == 0 for kind in fp16.values() for v in kind.values())
    assert kivi["fixed_sign"]["keys"] < 0.75 * observer["fixed_sign"]["keys"]
    assert observer["heavy_tailed"]["keys"] < 0.75 * kivi["heavy_tailed"]["keys"]


def test_quality_prints_its_table_after_the_throughput_table(capsys) -> None:
    assert (
        codec_main("--batch 1 --tokens 8 --layers 1 --heads 1 --head-dim 8 --schemes int4 --repeat 1 --quality".split())
        == 0
    )
    out = capsys.readouterr().out
    assert out.index("memcpy") < out.index("quantizer MSE") and "observer" in out and "fixed_sign" in out


def test_unknown_scheme_exits_2_with_a_suggestion(capsys) -> None:
    assert codec_main(["--schemes", "int3"]) == 2
    assert "did you mean" in capsys.readouterr().err


def test_dispatcher_runs_codec_and_refuses_unknown_commands(capsys) -> None:
    assert (
        bench_main(
            "codec --batch 1 --tokens 2 --layers 1 --heads 1 --head-dim 2 --schemes int8 --repeat 1 --json".split()
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["rows"][0]["scheme"] == "int8"
    assert bench_main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_module_entry_point_runs_without_traceback() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "qc2c.bench",
            "codec",
            "--batch",
            "1",
            "--tokens",
            "2",
            "--layers",
            "1",
            "--heads",
            "1",
            "--head-dim",
            "2",
            "--schemes",
            "int2",
            "--repeat",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr


def test_codec_bench_prints_the_floor_and_the_lossless_bf16_path(capsys) -> None:
    """Each row's floor (bytes that must move, at memcpy speed): about 100 % for a message the decoder views in
    place, less where decoding writes the cache; a bf16 message on an fp16 cache is also measured on a bf16 cache."""
    rc = codec_main(
        "--batch 2 --tokens 8 --layers 2 --heads 1 --head-dim 8 --schemes fp16 bf16 int8 --repeat 1 --json".split()
    )
    assert rc == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [(r["scheme"], r["cache"]) for r in rows] == [
        ("fp16", "float16"),
        ("bf16", "float16"),
        ("bf16", "bfloat16"),
        ("int8", "float16"),
    ]
    floors = [r["floor"] for r in rows]
    assert floors[0] == floors[2] > 0.9  # under 1: the message's header and token index
    assert floors[1] < 0.5 < floors[3] < floors[0]
