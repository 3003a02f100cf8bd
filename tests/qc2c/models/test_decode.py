"""The one greedy decoder, on a scripted stand-in model: `python -m pytest tests/qc2c/models/test_decode.py -q`.

What it feeds each step (tokens, pads for finished rows, grown mask, each row's own next position) and where
a row stops; that real models decode a left-padded batch like single rows is tested in tests/qc2c/eval and
tests/qc2c/test_c2c_model.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

from qc2c.models.decode import greedy_decode

VOCAB = 10
PAD = 9


class Scripted:
    """Returns, per call, logits whose argmax is the next scripted token of each row; records its inputs."""

    def __init__(self, script: list[list[int]]) -> None:
        self.script, self.calls = script, []

    def __call__(self, **kw):
        self.calls.append(kw)
        step = len(self.calls)  # step 0's token comes from the prefill logits
        logits = torch.zeros(len(self.script), 1, VOCAB)
        for row, tokens in enumerate(self.script):
            logits[row, 0, tokens[step]] = 1.0
        return SimpleNamespace(logits=logits)


def one_hot(tokens: list[int]) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(tokens), VOCAB).float()


def test_rows_stop_at_their_eos_and_are_fed_pads_after_it() -> None:
    script = [[1, 2, 3, 4, 5], [6, 7, 0, 0, 0]]  # eos 7: row 1 stops at its second token
    model, cache = Scripted(script), object()
    mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
    pos = torch.tensor([[0, 0, 1], [0, 1, 2]])
    out = greedy_decode(model, cache, one_hot([1, 6]), mask, pos, max_new_tokens=4, eos_ids={7}, pad_id=PAD)
    assert out == [[1, 2, 3, 4], [6, 7]]
    assert len(model.calls) == 3  # the 4th token needs no step after it
    fed = [c["input_ids"][:, 0].tolist() for c in model.calls]
    assert fed == [[1, 6], [2, PAD], [3, PAD]]
    assert [c["position_ids"][:, 0].tolist() for c in model.calls] == [[2, 3], [3, 4], [4, 5]]
    assert torch.equal(model.calls[0]["attention_mask"], torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]]))
    assert all(c["past_key_values"] is cache and c["use_cache"] for c in model.calls)


def test_all_rows_finished_ends_early_and_zero_tokens_is_empty() -> None:
    model = Scripted([[7, 0], [7, 0]])
    mask, pos = torch.ones(2, 2, dtype=torch.long), torch.tensor([[0, 1], [0, 1]])
    assert greedy_decode(model, None, one_hot([7, 7]), mask, pos, max_new_tokens=5, eos_ids=[7]) == [[7], [7]]
    assert model.calls == []
    assert greedy_decode(model, None, one_hot([7, 7]), mask, pos, max_new_tokens=0) == [[], []]


def test_reference_mask_unmasks_prompt_pads_after_column_zero() -> None:
    model = Scripted([[1, 2, 3]])
    mask = torch.tensor([[1, 0, 1]])
    greedy_decode(model, None, one_hot([1]), mask, torch.tensor([[0, 1, 2]]), max_new_tokens=2, reference_mask=True)
    assert model.calls[0]["attention_mask"].tolist() == [[1, 1, 1, 1]]
    model = Scripted([[1, 2, 3]])
    greedy_decode(model, None, one_hot([1]), mask, torch.tensor([[0, 1, 2]]), max_new_tokens=2)
    assert model.calls[0]["attention_mask"].tolist() == [[1, 0, 1, 1]]
