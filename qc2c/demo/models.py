"""The demo models: who they are, what they know, and how one is built (tokenizer → config → pretraining).

| name | class | tokenizer | knows |
|---|---|---|---|
| receiver | Qwen3ForCausalLM, 4 layers, hidden 128 | demo qwen | A facts and the question format |
| sharer | Qwen2ForCausalLM, 5 layers, hidden 192 | demo qwen (the receiver's) | A, B, C and V facts |
| sharer_llama | LlamaForCausalLM, 6 layers, hidden 128 | demo llama (its own) | A, B, C and V facts |

Two stages (qc2c.demo.pretrain): the facts, then the answer at the prompt's answer phrase. Weights are trained
in float32 and saved in float16 safetensors (what ships; evaluation and fuser training read the saved files,
so they see exactly the shipped weights). The first stage's model is saved too (`.stage1/<name>` beside the
model folders, or where the build says) and the second stage starts from that saved float16 copy, so a
build that stops between the stages resumes with the same weights it would have had.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM

from qc2c.atomic import build_folder
from qc2c.demo.pretrain import ANSWER_STAGE, AnswerTrainer, FactTrainer, PretrainSpec
from qc2c.demo.vocab import build_demo_tokenizer
from qc2c.demo.world import World
from qc2c.models.tiny import TinySpec, hf_config, save_quietly

PRETRAINING_RECORD = "pretraining.json"  # beside the weights: steps, probe accuracy, wall time of the build
STAGE1_DIR = ".stage1"  # beside the model folders of a build: the first stage's models (module docstring)


@dataclass(frozen=True)
class DemoModel:
    spec: TinySpec
    knows: str  # the fact splits it is trained on
    pretrain: PretrainSpec = field(default_factory=PretrainSpec)


DEMO_MODELS: dict[str, DemoModel] = {
    "receiver": DemoModel(
        TinySpec("qwen3", "qwen", n_layers=4, hidden_size=128, intermediate_size=384, n_heads=4, n_kv_heads=2,
                 head_dim=32, seed=11, init_std=0.02, max_position_embeddings=512),
        knows="A", pretrain=PretrainSpec(seed=11),
    ),
    "sharer": DemoModel(
        TinySpec("qwen2", "qwen", n_layers=5, hidden_size=192, intermediate_size=384, n_heads=6, n_kv_heads=2,
                 head_dim=32, seed=12, init_std=0.02, max_position_embeddings=512),
        knows="ABCV", pretrain=PretrainSpec(seed=12),
    ),
    "sharer_llama": DemoModel(
        TinySpec("llama", "llama", n_layers=6, hidden_size=128, intermediate_size=384, n_heads=4, n_kv_heads=1,
                 head_dim=32, seed=13, init_std=0.02, max_position_embeddings=512),
        knows="ABCV", pretrain=PretrainSpec(seed=13),
    ),
}  # fmt: skip


def build_model(
    name: str,
    world: World,
    out_dir: Path,
    *,
    pretrain: PretrainSpec | None = None,
    answer: PretrainSpec | None = None,
    stage1_root: Path | None = None,
    log: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train demo model `name` on `world` and save it (fp16, HF layout) at `out_dir`; returns training stats.

    `pretrain` / `answer`: the settings of the two stages (defaults: the model's own, ANSWER_STAGE);
    `stage1_root`: where the first stage's model is kept (default: `.stage1/` beside `out_dir`). Each
    folder appears by an atomic rename of a finished stage, so an interrupted build leaves nothing half-written.
    """
    demo = DEMO_MODELS[name]
    torch.set_num_threads(1)  # one thread: the same weights on any machine's core count (and builds run in parallel)
    tokenizer = build_demo_tokenizer(world, demo.spec.tokenizer)
    facts = world.facts_of(*demo.knows)
    out_dir = Path(out_dir)
    first = (Path(stage1_root) if stage1_root else out_dir.parent / STAGE1_DIR) / name
    if not (first / PRETRAINING_RECORD).is_file():
        torch.manual_seed(demo.spec.seed)
        model = AutoModelForCausalLM.from_config(hf_config(demo.spec, tokenizer), dtype=torch.float32)
        stats = FactTrainer(model, tokenizer, facts, pretrain or demo.pretrain).train(log)
        stats = {"name": name, "knows": demo.knows, "params": sum(p.numel() for p in model.parameters()), **stats}
        _save(model, tokenizer, stats, first)
    stats = {**json.loads((first / PRETRAINING_RECORD).read_text(encoding="utf-8")), "knows": demo.knows}
    model = AutoModelForCausalLM.from_pretrained(first, dtype=torch.float32)  # the saved fp16 weights
    spec = replace(answer or ANSWER_STAGE, seed=demo.pretrain.seed)

    def log_answer(record: dict[str, Any]) -> None:
        if log is not None:
            log({"stage": "answer", **record})

    stats["answer_stage"] = AnswerTrainer(model, tokenizer, facts, spec).train(log_answer)
    _save(model, tokenizer, stats, out_dir)
    return stats


def _save(model: torch.nn.Module, tokenizer: Any, stats: dict[str, Any], folder: Path) -> None:
    with build_folder(folder) as tmp:
        save_quietly(model.to(torch.float16), tokenizer, tmp)
        (tmp / PRETRAINING_RECORD).write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n", encoding="utf-8")
