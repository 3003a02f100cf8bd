"""Training data: conversation parsing, kv index rule, padding-correct batches.
.venv/bin/python -m pytest tests/qc2c/train/test_data.py -q"""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from qc2c.models.align import TokenAligner
from qc2c.models.tiny import resolve_tiny
from qc2c.train.data import DataError, build_example, collate, micro_batches, read_jsonl, to_messages

CHAT = [{"role": "user", "content": "Say red twice."}, {"role": "assistant", "content": "red red"}]


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(resolve_tiny("tiny:qwen3"))


def test_openhermes_rows_drop_system_turns(echo) -> None:
    convs = read_jsonl(echo)
    assert len(convs) == 16
    assert [m["role"] for m in convs[0]] == ["user", "assistant"]


def test_bad_rows_name_file_line_and_field(tmp_path) -> None:
    bad = tmp_path / "bad.jsonl"
    good = json.dumps({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]})
    bad.write_text(good + "\n" + json.dumps({"conversations": [{"from": "robot", "value": "x"}]}) + "\n")
    with pytest.raises(DataError, match=rf"^{bad}:2: conversations\[0\]: "):
        read_jsonl(bad)
    bad.write_text("{not json\n")
    with pytest.raises(DataError, match=rf"^{bad}:1: \(row\): invalid JSON"):
        read_jsonl(bad)
    with pytest.raises(DataError, match="final assistant turn"):
        to_messages({"conversations": [{"from": "human", "value": "hi"}]}, "x:1")


def test_kv_index_rule_fuses_all_but_the_last_instruction_token(tok) -> None:
    ex = build_example(CHAT, tok)
    head = tok.apply_chat_template(CHAT[:1], tokenize=False, add_generation_prompt=True, enable_thinking=False)
    n_instr = len(tok.encode(head, add_special_tokens=False))
    assert ex.split == n_instr - 1
    assert ex.fuse_mask == [True] * (n_instr - 1) + [False] * (len(ex.input_ids) - n_instr + 1)
    assert ex.labels[:n_instr] == [-100] * n_instr
    assert ex.labels[n_instr:] == ex.input_ids[n_instr:]
    assert tok.decode(ex.input_ids[n_instr:]).startswith("red red")


def test_aligned_example_fuses_only_message_tokens() -> None:
    r_tok = AutoTokenizer.from_pretrained(resolve_tiny("tiny:qwen3"))
    s_tok = AutoTokenizer.from_pretrained(resolve_tiny("tiny:llama"))
    ex = build_example(CHAT, r_tok, TokenAligner(r_tok, s_tok, "longest"))
    assert len(ex.sharer_input_ids) == len(ex.input_ids)
    assert any(ex.fuse_mask) and not any(ex.fuse_mask[ex.split :])
    first_label = next(i for i, v in enumerate(ex.labels) if v != -100)
    assert first_label == ex.split + 1


def test_collate_left_pads_prefix_and_right_pads_rest(tok) -> None:
    long = [{"role": "user", "content": "Say the word green twice please."}, {"role": "assistant", "content": "a"}]
    a, b = build_example(CHAT, tok), build_example(long, tok)
    batch = collate([a, b], pad_id=0)
    width_a = max(a.split, b.split)
    assert batch.input_ids.shape[1] == width_a + batch.last_len
    for row, ex in enumerate((a, b)):
        ids = batch.input_ids[row][batch.attention_mask[row].bool()].tolist()
        assert ids == ex.input_ids
        assert batch.position_ids[row][batch.attention_mask[row].bool()].tolist() == list(range(len(ex.input_ids)))
        assert int(batch.fuse_mask[row].sum()) == sum(ex.fuse_mask)
    assert not batch.fuse_mask[:, width_a:].any()


def test_micro_batches_resume_at_the_same_place(tok, echo) -> None:
    exs = [build_example(c, tok) for c in read_jsonl(echo)]
    full = [rows for _, (_, rows) in zip(range(10), micro_batches(exs, 3, seed=5))]
    resumed = [rows for _, (_, rows) in zip(range(4), micro_batches(exs, 3, seed=5, start=6))]
    assert [[e.input_ids for e in r] for r in full[6:]] == [[e.input_ids for e in r] for r in resumed]


def test_hf_dataset_id_reads_a_local_dataset_folder(tmp_path, echo) -> None:
    from qc2c.config import TrainDataConfig
    from qc2c.train.data import load_conversations

    (tmp_path / "train.jsonl").write_text(echo.read_text())
    convs = load_conversations(TrainDataConfig(dataset=str(tmp_path), split="train", limit=3))
    assert convs == read_jsonl(echo, 3)
