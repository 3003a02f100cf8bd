"""`make demo-zoo` on a reduced world: the whole rebuild path (world -> models -> runner-trained fusers ->
SHA256SUMS), and the same models twice. Minutes, so not in the default run:

    QC2C_TEST_ZOO_REBUILD=1 .venv/bin/python -m pytest tests/runner/test_demo_zoo.py
"""

from __future__ import annotations

import json
import os

import pytest

from qc2c.demo import zoo
from qc2c.demo.build import build_models
from qc2c.demo.world import World, WorldSpec
from runner.demo_zoo import REDUCED_PRETRAIN, REDUCED_WORLD, build_zoo

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get("QC2C_TEST_ZOO_REBUILD"), reason="the zoo rebuild takes minutes: QC2C_TEST_ZOO_REBUILD=1"
    ),
]


def test_reduced_rebuild_makes_a_complete_recorded_zoo_and_is_deterministic(tmp_path):
    target = tmp_path / "zoo"
    info = build_zoo(target, reduced=True)
    assert zoo.verify(target) == []
    assert set(info["models"]) == set(zoo.MODELS) and set(info["fusers"]) == set(zoo.FUSERS)
    for name in zoo.FUSERS:
        assert (target / "fusers" / name / "final" / "projector_config.json").is_file()
    assert json.loads((target / "build.json").read_text())["reduced"] is True
    assert not (tmp_path / ".zoo.build").exists()  # staged, then swapped in
    again = tmp_path / "again"
    build_models(World(WorldSpec(**REDUCED_WORLD)), again, only=["receiver"], pretrain=REDUCED_PRETRAIN)
    for rel in ("receiver/model.safetensors", "receiver/tokenizer.json"):
        assert (again / rel).read_bytes() == (target / rel).read_bytes(), rel
