"""python -m pytest tests/runner/test_scoring_shared.py -q

The run's batch loop scores the C2C settings from shared prefills (`qc2c.eval.shared`): a stop signal during
a shared batch abandons it at once (Preempted, nothing written), and the resumed run completes with the same
records as the per-setting path would have written (the models alone: probabilities to 5 decimals).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from runner.execute import run_plan
from runner.exitcodes import EXIT_OK, EXIT_PREEMPTED
from runner.manifest import load_manifest
from runner.plan import make_plan

MANIFEST = """\
schema: 1
name: {name}
milestone: stest
pair: {{receiver: "tiny:qwen3", sharer: "tiny:qwen2"}}
fuser: {{path: "tiny:qwen3+qwen2"}}
kv: {{quant: {{scheme: int4, group_size: 32}}, selection: {{method: knorm, keep: 0.5}}}}
eval: {{datasets: [mini], limit: 6, batch_size: 3, baselines: [receiver, sharer, c2c_fp16]}}
runtime: {{device: cpu, dtype: float32, container: native}}
"""


def _records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "progress" / "mini.jsonl").read_text().splitlines()
    out = []
    for line in lines:
        rec = json.loads(line)
        for name, row in rec["settings"].items():
            row.pop("timing", None)
            for k in [k for k in row if k.endswith("_s")]:
                row.pop(k)
            if name in ("receiver", "sharer"):  # the model alone in two forwards: equal within 1e-5, not bitwise
                row["option_probs"] = {k: round(v, 5) for k, v in row["option_probs"].items()}
        out.append(rec)
    return out


def test_a_stop_inside_a_shared_batch_is_preempted_and_the_resume_equals_per_setting(tmp_path: Path, monkeypatch):
    import qc2c.eval.shared as shared

    path = tmp_path / "s.yaml"
    path.write_text(MANIFEST.format(name="s"))
    real, killed_at = shared.score_shared, []

    def stuck(group, items):
        killed_at.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(60)
        return real(group, items)

    monkeypatch.setattr(shared, "score_shared", stuck)
    plan = make_plan(load_manifest(path), source=path, runs_dir=tmp_path / "runs")
    assert run_plan(plan) == EXIT_PREEMPTED
    assert time.monotonic() - killed_at[0] < 20
    monkeypatch.setattr(shared, "score_shared", real)
    assert run_plan(make_plan(load_manifest(path), source=path, runs_dir=tmp_path / "runs")) == EXIT_OK
    resumed = _records(plan.run_dir)

    # the same manifest scored by the per-setting path
    def per_setting(scorers, items, *, shared=True):
        return real_settings(scorers, items, shared=False)

    real_settings = shared.score_settings
    monkeypatch.setattr("runner.scoring_loop.score_settings", per_setting)
    path2 = tmp_path / "p.yaml"
    path2.write_text(MANIFEST.format(name="p"))
    plan2 = make_plan(load_manifest(path2), source=path2, runs_dir=tmp_path / "runs")
    assert run_plan(plan2) == EXIT_OK
    assert _records(plan2.run_dir) == resumed
    assert {"receiver", "sharer", "c2c_fp16", "compressed"} <= set(resumed[0]["settings"])
