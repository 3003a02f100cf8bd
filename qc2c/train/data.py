"""Chat data for C2C training: conversations -> examples (ids, labels, fuse mask) -> padding-correct batches.

Source (docs/c2c.md §6; upstream `ChatDataset` / `AlignedChatDataset`):
  * rows are OpenHermes-2.5 style `{"conversations": [{"from": "human"|"gpt"|"system", "value": ...}]}`
    (or `{"messages": [{"role", "content"}]}`); system turns are removed; the last turn must be the
    assistant's (the response the loss is on);
  * instruction = chat_template(messages[:-1], add_generation_prompt=True, enable_thinking=False); the
    response is what the full template adds after it. Labels are -100 on the instruction;
  * kv index: the first len(instruction)-1 tokens are fused; the last instruction token and the response
    form the last section (their KV is the receiver's own; the loss reads their logits);
  * aligned pairs (§4): `align_chat_messages(..., remove_last_surfix=True)`; only message tokens before the
    last instruction token are fused; labels start at the last message section; aligner pads are masked.
  * conversations longer than max_length tokens are dropped (as the reference does), and counted.

Batches (`collate`): the fused prefix [0, split) is LEFT-padded and the rest [split, L) RIGHT-padded, so
every row's last section starts at the same column; position ids count each row's own tokens from 0
(batch pads get mask 0), which makes a row's loss independent of what it is batched with.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from qc2c.config import TrainDataConfig

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


class DataError(ValueError):
    """Bad training data; the message is `file:line: field: what is wrong`."""


@dataclass
class Example:
    """One conversation, tokenised. All lists have length L; positions < split are the fused prefix."""

    input_ids: list[int]
    labels: list[int]
    fuse_mask: list[bool]
    attention_mask: list[int]
    split: int
    sharer_input_ids: list[int] | None = None
    sharer_attention_mask: list[int] | None = None


def to_messages(row: Any, where: str) -> list[dict[str, str]]:
    """OpenHermes `conversations` (from/value) or `messages` (role/content) -> messages without system turns."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: (row): expected an object with 'conversations' or 'messages'")
    key = "conversations" if "conversations" in row else "messages" if "messages" in row else None
    if key is None or not isinstance(row[key], list):
        raise DataError(f"{where}: conversations: missing (expected a list of turns)")
    out = []
    for i, turn in enumerate(row[key]):
        role = turn.get("from", turn.get("role")) if isinstance(turn, dict) else None
        text = turn.get("value", turn.get("content")) if isinstance(turn, dict) else None
        if role not in ROLES or not isinstance(text, str):
            raise DataError(
                f"{where}: {key}[{i}]: expected from/value (or role/content) with a known role, got {turn!r}"
            )
        if ROLES[role] != "system":
            out.append({"role": ROLES[role], "content": text})
    if len(out) < 2 or out[-1]["role"] != "assistant" or not out[-1]["content"]:
        raise DataError(f"{where}: {key}: needs a user turn and a non-empty final assistant turn")
    return out


def read_jsonl(path: str | Path, limit: int | None = None) -> list[list[dict[str, str]]]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}:1: train.data.jsonl: no such file")
    convs = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: (row): invalid JSON: {e.msg}") from None
            convs.append(to_messages(row, f"{path}:{n}"))
            if limit is not None and len(convs) >= limit:
                break
    if not convs:
        raise DataError(f"{path}:1: train.data.jsonl: no conversations")
    return convs


def read_hf(dataset: str, split: str, limit: int | None = None) -> list[list[dict[str, str]]]:
    """A HF dataset id (cached offline by `python -m qc2c.prefetch datasets`); the first `limit` rows."""
    from datasets import load_dataset

    ds = load_dataset(dataset, split=split if limit is None else f"{split}[:{limit}]")
    return [to_messages(row, f"{dataset}[{split}]:{i}") for i, row in enumerate(ds)]


def resolve_jsonl(ref: str) -> Path:
    """A path, or `demo:<name>` for `data/<name>.jsonl` of the demo zoo in use (qc2c.demo.zoo)."""
    if str(ref).startswith("demo:"):
        from qc2c.demo.zoo import zoo_root

        return zoo_root() / "data" / f"{str(ref).removeprefix('demo:')}.jsonl"
    return Path(ref)


def load_conversations(data: TrainDataConfig) -> list[list[dict[str, str]]]:
    """The conversations of `train.data`: exactly one of jsonl / dataset."""
    if data.jsonl:
        return read_jsonl(resolve_jsonl(data.jsonl), data.limit)
    return read_hf(data.dataset, data.split, data.limit)


def build_example(messages: list[dict[str, str]], tokenizer: Any, aligner: Any = None) -> Example:
    """Tokenise one conversation (module docstring); `aligner` a qc2c.models.align.TokenAligner or None."""
    if aligner is not None:
        a = aligner.align_chat_messages(messages, remove_last_surfix=True)
        last = a.sections[-1]
        if last["type"] != "message":
            raise DataError("aligned chat does not end with the response message")
        instr = last["slm_range"][0]
        mask = [0 if p else 1 for p in a.receiver_padding_mask]
        labels = [t if (i >= instr and m) else -100 for i, (t, m) in enumerate(zip(a.receiver_ids, mask))]
        fuse = [bool(m) and i < instr - 1 for i, m in enumerate(a.message_mask)]
        s_mask = [0 if p else 1 for p in a.sharer_padding_mask]
        return Example(a.receiver_ids, labels, fuse, mask, max(instr - 1, 0), a.sharer_ids, s_mask)
    head = tokenizer.apply_chat_template(
        messages[:-1], tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    full = tokenizer.apply_chat_template(messages, tokenize=False, enable_thinking=False)
    tail = full[len(head) :] if full.startswith(head) else messages[-1]["content"]
    instr = tokenizer.encode(head, add_special_tokens=False)
    resp = tokenizer.encode(tail, add_special_tokens=False)
    ids = instr + resp
    split = max(len(instr) - 1, 0)
    return Example(ids, [-100] * len(instr) + resp, [i < split for i in range(len(ids))], [1] * len(ids), split)


def build_examples(
    conversations: Sequence[list[dict[str, str]]], tokenizer: Any, aligner: Any = None, max_length: int = 2048
) -> tuple[list[Example], int]:
    """(examples, n_dropped_too_long)."""
    out, dropped = [], 0
    for messages in conversations:
        ex = build_example(messages, tokenizer, aligner)
        if len(ex.input_ids) > max_length:
            dropped += 1
            continue
        out.append(ex)
    return out, dropped


@dataclass
class TrainBatch:
    input_ids: Tensor  # (B, L)
    attention_mask: Tensor  # (B, L) 0/1
    position_ids: Tensor  # (B, L)
    fuse_mask: Tensor  # (B, L) bool, only inside the prefix [0, L - last_len)
    labels: Tensor  # (B, last_len): labels of the last section (-100 = no loss)
    last_len: int
    sharer_input_ids: Tensor | None = None
    sharer_attention_mask: Tensor | None = None

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())

    def to(self, device: Any) -> TrainBatch:
        move = {k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in self.__dict__.items()}
        return TrainBatch(**move)


def collate(examples: Sequence[Example], pad_id: int, sharer_pad_id: int | None = None) -> TrainBatch:
    """Left-pad the fused prefix, right-pad the rest (module docstring)."""
    width_a = max(e.split for e in examples)
    width_b = max(len(e.input_ids) - e.split for e in examples)
    s_pad = pad_id if sharer_pad_id is None else sharer_pad_id
    rows: dict[str, list[list[Any]]] = {k: [] for k in ("ids", "mask", "pos", "fuse", "labels", "s_ids", "s_mask")}
    for e in examples:
        n_a, n_b = e.split, len(e.input_ids) - e.split
        left, right = width_a - n_a, width_b - n_b

        def pad(values: Sequence[Any], fill: Any, left: int = left, right: int = right) -> list[Any]:
            return [fill] * left + list(values) + [fill] * right

        rows["ids"].append(pad(e.input_ids, pad_id))
        rows["mask"].append(pad(e.attention_mask, 0))
        rows["pos"].append(pad(range(len(e.input_ids)), 0))
        rows["fuse"].append(pad(e.fuse_mask, False))
        rows["labels"].append(pad(e.labels, -100)[width_a:])
        if e.sharer_input_ids is not None:
            rows["s_ids"].append(pad(e.sharer_input_ids, s_pad))
            rows["s_mask"].append(pad(e.sharer_attention_mask or [1] * len(e.input_ids), 0))
    aligned = bool(rows["s_ids"])
    return TrainBatch(
        input_ids=torch.tensor(rows["ids"]),
        attention_mask=torch.tensor(rows["mask"]),
        position_ids=torch.tensor(rows["pos"]),
        fuse_mask=torch.tensor(rows["fuse"], dtype=torch.bool),
        labels=torch.tensor(rows["labels"]),
        last_len=width_b,
        sharer_input_ids=torch.tensor(rows["s_ids"]) if aligned else None,
        sharer_attention_mask=torch.tensor(rows["s_mask"]) if aligned else None,
    )


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The example order of one epoch: a permutation seeded by (seed, epoch), so a resumed run sees the same."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def micro_batches(
    examples: Sequence[Example], batch_size: int, seed: int, start: int = 0
) -> Iterator[tuple[int, list[Example]]]:
    """(global micro-batch index, examples) from index `start` on, epoch after epoch (last partial batch kept)."""
    per_epoch = (len(examples) + batch_size - 1) // batch_size
    k = start
    while True:
        epoch, i = divmod(k, per_epoch)
        order = epoch_order(len(examples), seed, epoch)
        yield k, [examples[j] for j in order[i * batch_size : (i + 1) * batch_size]]
        k += 1
