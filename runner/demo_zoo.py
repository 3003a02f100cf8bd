"""`make demo-zoo`: rebuild the whole demo zoo — world data, pretrained models, trained fusers, sha256 record.

The models are pretrained by qc2c.demo (three processes side by side); the fusers are trained by the runner
itself from the shipped manifests `manifests/demo_fuser_train*.yaml` (`kind: train`), so the zoo exercises
the same training path users run. Everything is built into a staging folder next to the target
(`.<zoo>.build/`, run folders in `.<zoo>.runs/`) and swapped in when complete: an interrupted build never
leaves a half-written zoo, and re-running it continues where it stopped (finished models and the models'
first training stage, in `.<zoo>.runs/stage1/`, are kept; fuser trainings resume from their checkpoints).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from runner.lifecycle import REPO_ROOT

# fuser name in the zoo -> the training manifest that makes it, in training stages: the fusers of one stage are
# independent and train side by side; a later stage starts from an earlier one's fuser (the whole-message
# fusers from the tail fusers, the QAT fuser from receiver+sharer).
FUSER_STAGES: tuple[dict[str, str], ...] = (
    {
        "receiver+sharer-tail": "manifests/demo_fuser_train_tail.yaml",
        "receiver+sharer_llama-tail": "manifests/demo_fuser_train_llama_tail.yaml",
    },
    {
        "receiver+sharer": "manifests/demo_fuser_train.yaml",
        "receiver+sharer_llama": "manifests/demo_fuser_train_llama.yaml",
    },
    {"receiver+sharer-qat_int2": "manifests/demo_fuser_train_qat_int2.yaml"},
)
FUSER_MANIFESTS: dict[str, str] = {name: path for stage in FUSER_STAGES for name, path in stage.items()}

# A reduced world and budget for the rebuild test (minutes, not an hour); not a zoo anyone should ship.
REDUCED_WORLD = {"entities": (8, 8, 6, 4)}
REDUCED_PRETRAIN = {"max_steps": 20, "probe_every": 10, "batch_size": 16, "question_batch_size": 8, "probe_size": 32}
REDUCED_FUSER_STEPS = 4


@contextmanager
def _env(**values: str):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _say(msg: str) -> None:
    print(f"demo-zoo: {msg}", file=sys.stderr, flush=True)


def _manifest_for(name: str, staging_runs: Path, reduced: bool) -> Path:
    """The shipped training manifest, or for a reduced build a copy with a few optimizer steps."""
    source = REPO_ROOT / FUSER_MANIFESTS[name]
    if not reduced:
        return source
    yaml = YAML()
    data = yaml.load(source.read_text(encoding="utf-8"))
    data["train"].setdefault("optim", {})["max_steps"] = REDUCED_FUSER_STEPS
    data["train"]["save_steps"] = REDUCED_FUSER_STEPS
    data["train"]["projector"]["anneal_steps"] = REDUCED_FUSER_STEPS
    out = staging_runs / "manifests" / source.name
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        yaml.dump(data, f)
    return out


def _train_fusers(names: list[str], staging: Path, runs: Path, reduced: bool) -> dict[str, Any]:
    """Run the training manifests of `names` side by side (one thread each); copy each fuser into the zoo."""
    env = {**os.environ, "QC2C_DEMO_ZOO": str(staging), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs, manifests, stats = {}, {}, {}
    for name in names:
        manifests[name] = _manifest_for(name, runs, reduced)
        if (staging / "fusers" / name / "final").is_dir():
            stats[name] = _fuser_stats(_run_dir(manifests[name], staging, runs))
            _say(f"fuser {name}: already built ({stats[name]})")
            continue
        cmd = [sys.executable, "-m", "runner", "run", str(manifests[name]), "--runs-dir", str(runs)]
        log = (runs / f"{name}.log").open("a", encoding="utf-8")
        _say(f"fuser {name}: training ({manifests[name].name}; log {runs / (name + '.log')})")
        procs[name] = (subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT), log)
    for name, (proc, log) in procs.items():
        code = proc.wait()
        log.close()
        if code != 0:
            raise RuntimeError(f"fuser {name}: training exited {code}; see {runs / (name + '.log')}")
        run_dir = _run_dir(manifests[name], staging, runs)
        target = staging / "fusers" / name
        tmp = target.with_name(f".{name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        shutil.copy2(run_dir / "config.json", tmp / "config.json")
        shutil.copytree(run_dir / "final", tmp / "final")
        os.replace(tmp, target)
        stats[name] = _fuser_stats(run_dir)
        _say(f"fuser {name}: {stats[name]}")
    return stats


def _run_dir(manifest: Path, staging: Path, runs: Path) -> Path:
    """The run folder `runner run` uses for `manifest` (the demo zoo being built is the one it resolves)."""
    from runner.manifest import load_manifest
    from runner.plan import make_plan

    with _env(QC2C_DEMO_ZOO=str(staging)):
        return make_plan(load_manifest(manifest), source=manifest, runs_dir=runs).run_dir


def _fuser_stats(run_dir: Path) -> dict[str, Any]:
    from qc2c.train.diagnostics import DiagnosticsLog

    lines = DiagnosticsLog(run_dir / "diagnostics.jsonl").read()
    last = lines[-1] if lines else {}
    evals = [x["eval_loss"] for x in lines if x.get("eval_loss") is not None]
    return {
        "steps": last.get("step"),
        "loss": last.get("loss"),
        "eval_loss": evals[-1] if evals else None,
        "wall_s": round(sum(x.get("wall_s", 0.0) for x in lines), 1),
    }


def build_zoo(target: Path, *, reduced: bool = False) -> dict[str, Any]:
    """Build the zoo into `target` (replaced when the build completes); returns build.json's content."""
    from qc2c.atomic import publish_folder
    from qc2c.demo import build as demo_build
    from qc2c.demo import zoo
    from qc2c.demo.models import PRETRAINING_RECORD
    from qc2c.demo.world import World, WorldSpec

    target = Path(target).resolve()
    staging = target.with_name(f".{target.name}.build")
    runs = target.with_name(f".{target.name}.runs")
    staging.mkdir(parents=True, exist_ok=True)
    runs.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    world = World(WorldSpec(**REDUCED_WORLD) if reduced else WorldSpec())
    info: dict[str, Any] = {
        "world": asdict(world.spec),
        "reduced": reduced,
        "data": demo_build.write_data(world, staging),
    }
    _say(f"world data: {info['data']}")
    missing = [n for n in zoo.MODELS if not (staging / n / "config.json").is_file()]
    t1 = time.monotonic()
    demo_build.build_models(
        world, staging, only=missing, pretrain=REDUCED_PRETRAIN if reduced else None, stage1_root=runs / "stage1"
    )
    info["models"] = {n: json.loads((staging / n / PRETRAINING_RECORD).read_text()) for n in zoo.MODELS}
    info["models_wall_s"] = round(time.monotonic() - t1, 1)
    _say(f"models: {info['models']}")
    t2 = time.monotonic()
    info["fusers"] = {}
    for stage in FUSER_STAGES:
        info["fusers"].update(_train_fusers(list(stage), staging, runs, reduced))
    info["fusers_wall_s"] = round(time.monotonic() - t2, 1)
    info["total_wall_s"] = round(time.monotonic() - t0, 1)
    (staging / "build.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    shutil.copy2(REPO_ROOT / "qc2c" / "demo" / "zoo_readme.md", staging / "README.md")
    zoo.write_record(staging)
    publish_folder(staging, target)
    _say(f"done in {info['total_wall_s']:.0f} s: {target} (run folders kept in {runs})")
    return info
