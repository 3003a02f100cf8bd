"""The demo world: deterministic, four disjoint fact splits, no B or V fact anywhere near the fuser's data."""

from __future__ import annotations

import json

import pytest

from qc2c.demo.build import write_data
from qc2c.demo.vocab import build_demo_tokenizer
from qc2c.demo.world import ATTRIBUTES, World, WorldSpec
from qc2c.demo.zoo import SHIPPED


def test_world_is_deterministic_and_seeded():
    a, b, other = World(), World(), World(WorldSpec(seed=1))
    assert a.facts == b.facts and list(a.test_questions()) == list(b.test_questions())
    assert a.names != other.names


def test_splits_are_disjoint_and_cover_every_entity():
    world = World()
    by_split = {s: {f.entity for f in world.facts_of(s)} for s in "ABCV"}
    assert [len(by_split[s]) for s in "ABCV"] == list(world.spec.entities)
    for i, a in enumerate("ABCV"):
        for b in "ABCV"[i + 1 :]:
            assert not (by_split[a] & by_split[b]), (a, b)
    assert len(world.facts) == sum(world.spec.entities) * len(ATTRIBUTES)


def test_resplitting_sharer_only_entities_keeps_what_a_sharer_is_trained_on():
    """Entities are numbered A, B, C, V: moving entities between the sharer-only splits (or adding V) leaves
    the sharers' facts, in order, as they were, so first-stage sharer weights stay valid."""
    three = World(WorldSpec(entities=(60, 90, 30)))
    four = World()
    assert [(f.entity, f.attribute, f.value) for f in three.facts_of("A", "B", "C")] == [
        (f.entity, f.attribute, f.value) for f in four.facts_of("A", "B", "C", "V")
    ]


def test_fuser_training_data_never_mentions_a_b_or_v_entity(tmp_path):
    world = World()
    write_data(world, tmp_path)
    held_out = {f.entity for f in world.facts_of("B", "V")}
    a, _, c, _ = world.spec.entities
    for name, splits, n_entities in (("fuser_train", {"A", "C"}, a + c), ("fuser_train_shared", {"A"}, a)):
        text = (tmp_path / "data" / f"{name}.jsonl").read_text()
        assert not [n for n in held_out if n in text], name
        rows = [json.loads(x) for x in text.splitlines()]
        assert {r["fact"][0] for r in rows} == splits, name
        assert len(rows) == n_entities * len(ATTRIBUTES) * world.spec.train_variants, name


def test_fuser_questions_refuse_held_out_splits():
    with pytest.raises(ValueError, match="A and C facts only"):
        list(World().fuser_questions("B"))


def test_validation_split_is_disjoint_from_the_reported_sharer_only_items(tmp_path):
    world = World()
    write_data(world, tmp_path)

    def read(split: str) -> list[dict]:
        return [json.loads(x) for x in (tmp_path / "data" / "demo" / f"{split}.jsonl").read_text().splitlines()]

    test, validation = read("test"), read("validation")
    assert {r["subject"] for r in validation} == {"shared", "sharer_only"}
    test_only = {r["question"] for r in test if r["subject"] == "sharer_only"}
    val_only = {r["question"] for r in validation if r["subject"] == "sharer_only"}
    assert val_only and not (val_only & test_only)
    v_names = {f.entity for f in world.facts_of("V")}
    assert not any(name in r["question"] for r in test for name in v_names)


def test_test_split_has_both_subjects_and_valid_answers(tmp_path):
    world = World()
    write_data(world, tmp_path)
    rows = [json.loads(x) for x in (tmp_path / "data" / "demo" / "test.jsonl").read_text().splitlines()]
    assert len(rows) >= 400
    assert {r["subject"] for r in rows} == {"shared", "sharer_only"}
    c_names = {f.entity for f in world.facts_of("C")}
    assert not any(name in r["question"] for r in rows for name in c_names)
    assert sum(r["subject"] == "sharer_only" for r in rows) == 3 * world.spec.entities[1]
    for r in rows:
        assert r["answerKey"] in r["choices"]["label"] and len(set(r["choices"]["text"])) == 4
    # every letter is the answer about equally often: no letter prior to exploit (values are uniform)
    counts = [sum(r["answerKey"] == x for r in rows) for x in "ABCD"]
    assert max(counts) - min(counts) < len(rows) * 0.1


def test_shipped_data_is_what_the_world_generates(tmp_path):
    write_data(World(), tmp_path)
    for rel in (
        "data/demo/test.jsonl",
        "data/demo/validation.jsonl",
        "data/fuser_train.jsonl",
        "data/fuser_train_shared.jsonl",
    ):
        assert (tmp_path / rel).read_bytes() == (SHIPPED / rel).read_bytes(), rel


def test_names_span_several_tokens_in_both_tokenizers():
    world = World()
    for family in ("qwen", "llama"):
        tok = build_demo_tokenizer(world, family)
        lengths = [len(tok(" " + n, add_special_tokens=False).input_ids) for n in world.names]
        assert min(lengths) >= 2, family


def test_token_alignment_carries_every_name_intact():
    """C2C's alignment maps each receiver token to one sharer token: a name must arrive as the Llama sharer
    itself would tokenize it, or the sharer cannot recognise the entity (and nothing can be carried)."""
    from qc2c.models.align import TokenAligner

    world = World()
    receiver, sharer = build_demo_tokenizer(world, "qwen"), build_demo_tokenizer(world, "llama")
    aligner = TokenAligner(receiver, sharer, "longest")
    assert receiver.chat_template != sharer.chat_template  # still the Llama's own tokenizer:
    assert receiver.convert_tokens_to_ids("la") != sharer.convert_tokens_to_ids("la")  # other ids, same pieces
    for name in world.names:
        text = " " + name
        ids = receiver(text, add_special_tokens=False).input_ids
        assert aligner.align_tokens(ids) == sharer(text, add_special_tokens=False).input_ids, name
