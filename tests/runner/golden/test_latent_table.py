# python -m pytest tests/runner/golden/test_latent_table.py -q
"""The summary's latent table, on the shipped golden store's latent rows (manifests/demo_latent*.yaml)."""

from __future__ import annotations

from pathlib import Path

from runner.golden.latent_table import render_latent
from runner.golden.merge import load_golden
from runner.golden.validate import GoldenFile

GOLDEN = Path(__file__).resolve().parents[3] / "golden" / "golden_runs.json"


def table_rows(lines: list[str]) -> list[list[str]]:
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines if ln.startswith("| ") and "---" not in ln]


def test_every_setting_of_a_latent_run_has_a_paired_difference_to_latent():
    golden = load_golden(GOLDEN)
    latent_runs = {r.run_key for r in golden.rows.values() if r.setting == "latent"}
    assert latent_runs, "no latent rows in the golden store (run manifests/demo_latent*.yaml and merge)"
    rows = table_rows(render_latent(golden))[1:]
    body = [r for r in rows if r[0] != "setting"]
    assert {r[0] for r in body} >= {"latent", "latent_int8", "latent_int4", "latent_placebo", "latent_text"}
    for cells in body:
        if cells[0] != "latent":
            assert cells[6] != "—" and cells[7] != "—", cells  # Δ vs latent and its McNemar p
        assert (cells[8] != "—") == cells[0].startswith("latent"), cells  # short-answer columns: latent only
        if cells[0] == "latent_text":
            assert cells[3] == "1", cells  # text / its own bytes


def test_no_latent_rows_no_section():
    golden = load_golden(GOLDEN)
    rows = {k: r for k, r in golden.rows.items() if not r.setting.startswith("latent")}
    kept = GoldenFile.model_validate({"schema": 2, "rows": {k: r.model_dump(by_alias=True) for k, r in rows.items()}})
    assert render_latent(kept) == []
