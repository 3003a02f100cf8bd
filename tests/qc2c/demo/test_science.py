"""Science on the demo pair: the message carries the sharer's knowledge, and only the real fuser carries it.

A fixed slice of the `demo` test split (30 shared + all 225 sharer_only items) runs through the real runner with
the receiver, c2c_fp16 and placebo baselines and an int8 message. The checks are one function
(`science_failures`) so the same function can be shown to FAIL when the fuser is replaced by one that adds
nothing (projector outputs zeroed) or reads the wrong sharer layers (layer map shuffled): a check that
passed for those would not be testing communication.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from qc2c.demo.zoo import resolve_demo_fuser
from runner.__main__ import main

SLICE = [150, 405]  # the demo split lists 180 shared items, then 225 sharer_only: 30 + 225 here
GAIN = 0.25  # the gain demanded on sharer_only items; the shipped fuser's measured gain is in the README
MANIFEST = """schema: 1
name: demo_science
milestone: science
kind: eval
pair: {{receiver: "demo:receiver", sharer: "demo:sharer"}}
fuser: {{path: "{fuser}"}}
kv:
  quant: {{scheme: int8, group_size: 32}}
eval:
  datasets: [demo]
  limit: {limit}
  batch_size: 60
  baselines: [receiver, c2c_fp16, c2c_placebo]
runtime: {{device: cpu, dtype: float32, container: native}}
"""


def run_slice(tmp_path: Path, fuser: str | Path) -> dict:
    manifest = tmp_path / "demo_science.yaml"
    manifest.write_text(MANIFEST.format(fuser=fuser, limit=json.dumps(SLICE)))
    assert main(["run", str(manifest), "--runs-dir", str(tmp_path / "runs")]) == 0
    (results,) = (tmp_path / "runs").rglob("results/demo.json")
    return json.loads(results.read_text())["settings"]


def science_failures(settings: dict) -> list[str]:
    """What the demo must show; empty when it does."""
    failures = []
    fused = settings["c2c_fp16"]["subjects"]["sharer_only"]
    vs_receiver = fused["paired"]["receiver"]
    if not (vs_receiver["diff"] >= GAIN and vs_receiver["mcnemar_p"] < 0.01):
        failures.append(
            f"c2c_fp16 vs receiver on sharer_only: diff {vs_receiver['diff']:.3f}, p {vs_receiver['mcnemar_p']:.3g}"
        )
    placebo = settings["c2c_placebo"]["subjects"]["sharer_only"]["paired"]["receiver"]
    if placebo["diff"] > 0.1 and placebo["mcnemar_p"] < 0.01:
        failures.append(f"the placebo beats the receiver on sharer_only: diff {placebo['diff']:.3f}")
    gap = abs(settings["compressed"]["accuracy"] - settings["c2c_fp16"]["accuracy"])
    if gap > 0.05:
        failures.append(f"int8 differs from c2c_fp16 by {gap:.3f}")
    return failures


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> dict:
    return run_slice(tmp_path_factory.mktemp("real"), "demo:receiver+sharer")


def test_the_message_carries_the_sharers_knowledge(real):
    assert science_failures(real) == []


def _broken_fuser(tmp_path: Path, how: str) -> Path:
    folder = tmp_path / f"fuser_{how}"
    shutil.copytree(resolve_demo_fuser("demo:receiver+sharer"), folder)
    final = folder / "final"
    if how == "zero":
        for path in final.glob("projector_*.pt"):
            state = torch.load(path, map_location="cpu", weights_only=True)
            for key in state:
                if "proj_out" in key:
                    state[key] = torch.zeros_like(state[key])
            torch.save(state, path)
    else:  # shuffle: every receiver layer reads another sharer layer than the one it was trained on
        config = json.loads((final / "projector_config.json").read_text())
        mapping = config["0"]["1"]
        targets = sorted(mapping, key=int)
        sources = [mapping[t][0][0] for t in targets]
        rotated = sources[1:] + sources[:1]
        for t, s in zip(targets, rotated):
            mapping[t][0][0] = s
        (final / "projector_config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("how", ["zero", "shuffle"])
def test_the_checks_fail_without_a_working_fuser(tmp_path, how):
    settings = run_slice(tmp_path, _broken_fuser(tmp_path, how))
    assert any("c2c_fp16 vs receiver" in f for f in science_failures(settings))
