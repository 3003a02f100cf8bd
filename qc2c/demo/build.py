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
from qc2c.demo.pretrain import ANSWER_STAGE, PretrainSpec
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
    """The `demo` dataset's splits (data/demo/test.jsonl, validation.jsonl) and the fusers' chat data:
    data/fuser_train.jsonl (C and A facts) and data/fuser_train_shared.jsonl (A facts only). Never a B or V fact."""
    test = [q.as_row(item_id) for item_id, q in world.test_questions()]
    _write_lines(root / "data" / "demo" / "test.jsonl", test)
    validation = [q.as_row(item_id) for item_id, q in world.validation_questions()]
    _write_lines(root / "data" / "demo" / "validation.jsonl", validation)
    train = [fuser_conversation(q) for q in world.fuser_questions()]
    _write_lines(root / "data" / "fuser_train.jsonl", train)
    shared = [fuser_conversation(q) for q in world.fuser_questions("A")]
    _write_lines(root / "data" / "fuser_train_shared.jsonl", shared)
    return {
        "test_items": len(test),
        "validation_items": len(validation),
        "fuser_conversations": len(train),
        "fuser_conversations_shared": len(shared),
    }


def _build_one(args: tuple[str, dict, str, dict | None, str, Path | None]) -> dict[str, Any]:
    from qc2c.demo.models import build_model  # in the child: imports torch there

    name, world_spec, out, over, log_path, stage1_root = args
    over = over or {}
    first = replace(DEMO_MODELS[name].pretrain, **over)
    answer = replace(ANSWER_STAGE, **{k: v for k, v in over.items() if k != "target"})
    with open(log_path, "a", encoding="utf-8") as log:

        def write(record: dict[str, Any]) -> None:
            log.write(json.dumps({"model": name, **record}) + "\n")
            log.flush()

        world = World(WorldSpec(**world_spec))
        return build_model(
            name,
            world,
            Path(out) / name,
            pretrain=first,
            answer=answer,
            log=write,
            stage1_root=stage1_root,
        )


def build_models(
    world: World,
    root: Path,
    *,
    only: Sequence[str] | None = None,
    pretrain: dict[str, Any] | None = None,
    stage1_root: Path | None = None,
) -> list[dict[str, Any]]:
    """Pretrain the demo models into `root/<name>` in parallel processes; returns their training stats.

    `pretrain` overrides PretrainSpec fields of both stages for every model (a reduced build for tests).
    `stage1_root`: where first-stage models are kept (qc2c.demo.models.build_model). Progress lines go to
    `root/build.log` (one JSON object per probe).
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
    jobs = [(n, asdict(world.spec), str(root), pretrain, str(root / "build.log"), stage1_root) for n in names]
    with multiprocessing.get_context("spawn").Pool(len(jobs)) as pool:
        return pool.map(_build_one, jobs)
