"""python -m pytest tests/qc2c/kv/test_selection_reads.py -q

What each selector needs at the sender: its own KV, the projectors, or the receiver's state (an oracle).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from kv_cases import build_section

from qc2c.config import SelectionConfig, from_json
from qc2c.kv.selection import READS, SELECTORS, SelectionContext, build_selector, is_oracle


@pytest.mark.parametrize("name", SELECTORS.names())
def test_every_selector_declares_what_it_reads(name: str) -> None:
    assert SELECTORS.get(name).reads in READS


def test_only_delta_is_an_oracle() -> None:
    assert [name for name in SELECTORS.names() if is_oracle(name)] == ["delta"]
    assert SELECTORS.get("delta_sender").reads == "projector"


def _scores(name: str, section) -> torch.Tensor:
    return build_selector(from_json(SelectionConfig, {"method": name})).scores(SelectionContext(section))


@pytest.mark.parametrize("name", [n for n in SELECTORS.names() if SELECTORS.get(n).reads != "receiver"])
def test_sender_side_selectors_ignore_the_receivers_state(name: str) -> None:
    section = build_section(2, 3, 2, 16, 4, 0, n_pad=3, attention=True)
    gen = torch.Generator().manual_seed(7)
    other = [(torch.randn(k.shape, generator=gen), torch.randn(v.shape, generator=gen)) for k, v in section.receiver]
    assert torch.equal(_scores(name, section), _scores(name, replace(section, receiver=other)))


def test_delta_reads_the_receiver_and_its_sender_variant_does_not() -> None:
    base = build_section(2, 3, 2, 16, 4, 0, n_pad=3)

    def project(t, sharer_kv, receiver_kv):  # a projector whose update depends on the receiver's value
        k, v = base.project(t, sharer_kv, receiver_kv)
        return k, v + receiver_kv[1].float() ** 2

    section = replace(base, project=project)
    gen = torch.Generator().manual_seed(7)
    other = [(torch.randn(k.shape, generator=gen), torch.randn(v.shape, generator=gen)) for k, v in section.receiver]
    moved = replace(section, receiver=other)
    assert (_scores("delta", section) - _scores("delta", moved)).abs().max() > 1e-2
    assert torch.equal(_scores("delta_sender", section), _scores("delta_sender", moved))
