"""Build the demo zoo's world data and models (the fusers are trained by the runner: runner/demo_zoo.py).

    python -m qc2c.demo data   --out DIR            # the dataset + fuser chat data (seconds)
    python -m qc2c.demo models --out DIR [--only receiver]   # pretrain the three models (in parallel)
    python -m qc2c.demo record --out DIR            # write SHA256SUMS;  `verify` checks it

Each model trains in its own process on one thread (qc2c.demo.models), so the three run side by side and
give the same weights whatever the machine's core count.
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from qc2c.atomic import atomic_write
from qc2c.demo.models import DEMO_MODELS
from qc2c.demo.pretrain import PretrainSpec
from qc2c.demo.world import LABELS, World, WorldSpec
from qc2c.eval.prompts import RESPONSE_TEXT, build_prompt


def _write_lines(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def fuser_conversation(question) -> dict[str, Any]:
    """One chat row: the C2C prompt as the user turn, "The correct answer is X" as the assistant's."""
    prompt = build_prompt(question.fact.question, list(question.choices), LABELS[: len(question.choices)])
    return {
        "messages": [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": f"{RESPONSE_TEXT} {question.answer}"},
        ],
        "fact": question.fact.key,
    }


def write_data(world: World, root: Path) -> dict[str, int]:
    """data/demo/test.jsonl (the `demo` dataset) and data/fuser_train.jsonl (C and A facts, never B)."""
    test = [q.as_row(item_id) for item_id, q in world.test_questions()]
    _write_lines(root / "data" / "demo" / "test.jsonl", test)
    train = [fuser_conversation(q) for q in world.fuser_questions()]
    _write_lines(root / "data" / "fuser_train.jsonl", train)
    return {"test_items": len(test), "fuser_conversations": len(train)}


def _build_one(args: tuple[str, dict, str, dict | None, str]) -> dict[str, Any]:
    from qc2c.demo.models import build_model  # in the child: imports torch there

    name, world_spec, out, pretrain_over, log_path = args
    spec = DEMO_MODELS[name].pretrain
    if pretrain_over:
        spec = replace(spec, **pretrain_over)
    with open(log_path, "a", encoding="utf-8") as log:

        def write(record: dict[str, Any]) -> None:
            log.write(json.dumps({"model": name, **record}) + "\n")
            log.flush()

        return build_model(name, World(WorldSpec(**world_spec)), Path(out) / name, pretrain=spec, log=write)


def build_models(
    world: World, root: Path, *, only: Sequence[str] | None = None, pretrain: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Pretrain the demo models into `root/<name>` in parallel processes; returns their training stats.

    `pretrain` overrides PretrainSpec fields for every model (a reduced build for tests). Progress lines go
    to `root/build.log` (one JSON object per probe).
    """
    names = list(DEMO_MODELS if only is None else only)
    for name in names:
        if name not in DEMO_MODELS:
            raise ValueError(f"unknown demo model {name!r} (known: {', '.join(DEMO_MODELS)})")
    if pretrain:
        bad = set(pretrain) - set(PretrainSpec.__dataclass_fields__)
        if bad:
            raise ValueError(f"unknown pretraining settings: {', '.join(sorted(bad))}")
    root.mkdir(parents=True, exist_ok=True)
    if not names:
        return []
    jobs = [(n, asdict(world.spec), str(root), pretrain, str(root / "build.log")) for n in names]
    with multiprocessing.get_context("spawn").Pool(len(jobs)) as pool:
        return pool.map(_build_one, jobs)
