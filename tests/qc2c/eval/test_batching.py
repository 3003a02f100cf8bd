"""python -m pytest tests/qc2c/eval/test_batching.py -q"""

from __future__ import annotations

import pytest
import torch

from qc2c.eval.batching import by_length, chunks, left_pad
from qc2c.eval.prompts import RenderedPrompt


def _prompt(n_instr: int, n_resp: int) -> RenderedPrompt:
    return RenderedPrompt(list(range(10, 10 + n_instr)), list(range(90, 90 + n_resp)), "")


def test_left_pad_right_aligns_rows_with_own_positions() -> None:
    batch = left_pad([_prompt(3, 2), _prompt(5, 2)], pad_id=0, protocol="logits")
    assert batch.input_ids.tolist() == [[0, 0, 10, 11, 12, 90, 91], [10, 11, 12, 13, 14, 90, 91]]
    assert batch.attention_mask.tolist() == [[0, 0, 1, 1, 1, 1, 1], [1] * 7]
    assert batch.position_ids.tolist() == [[0, 0, 0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5, 6]]


def test_logits_fuses_each_rows_instruction_tokens_only() -> None:
    batch = left_pad([_prompt(3, 2), _prompt(5, 2)], pad_id=0, protocol="logits")
    assert batch.fused_end == 5
    assert batch.fuse_mask.tolist() == [[False, False, True, True, True, False, False], [True] * 5 + [False] * 2]


def test_generate_fuses_every_prompt_token_but_the_last() -> None:
    batch = left_pad([_prompt(2, 0), _prompt(4, 0)], pad_id=0, protocol="generate")
    assert batch.fused_end == 3
    assert batch.fuse_mask.tolist() == [[False, False, True, False], [True, True, True, False]]
    assert int(batch.fuse_mask.sum()) == (2 - 1) + (4 - 1)


def test_mixed_response_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="response lengths differ"):
        left_pad([_prompt(3, 2), _prompt(3, 1)], pad_id=0, protocol="logits")


def test_chunks_cover_everything_once() -> None:
    parts = chunks(10, 4)
    assert [list(r) for r in parts] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    with pytest.raises(ValueError):
        chunks(3, 0)


def test_to_keeps_shapes() -> None:
    batch = left_pad([_prompt(1, 1)], pad_id=0, protocol="logits").to("cpu")
    assert batch.input_ids.dtype == torch.long and batch.size == 1


def test_by_length_orders_longest_first_and_keeps_every_item() -> None:
    from types import SimpleNamespace

    items = [SimpleNamespace(id=i, question="q" * n, choices=["c"] * 2) for i, n in enumerate([3, 9, 1, 9])]
    ordered = by_length(items)
    assert [it.id for it in ordered] == [1, 3, 0, 2]  # stable among equal sizes
    assert sorted(it.id for it in ordered) == [0, 1, 2, 3]
