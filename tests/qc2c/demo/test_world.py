"""The demo world: deterministic, three disjoint fact splits, no B fact anywhere near the fuser's data."""

from __future__ import annotations

import json

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
    by_split = {s: {f.entity for f in world.facts_of(s)} for s in "ABC"}
    assert [len(by_split[s]) for s in "ABC"] == list(world.spec.entities)
    assert not (by_split["A"] & by_split["B"]) and not (by_split["A"] & by_split["C"])
    assert not (by_split["B"] & by_split["C"])
    assert len(world.facts) == sum(world.spec.entities) * len(ATTRIBUTES)


def test_fuser_training_data_never_mentions_a_b_entity(tmp_path):
    world = World()
    write_data(world, tmp_path)
    b_names = {f.entity for f in world.facts_of("B")}
    text = (tmp_path / "data" / "fuser_train.jsonl").read_text()
    assert not [n for n in b_names if n in text]
    rows = [json.loads(x) for x in text.splitlines()]
    assert {r["fact"][0] for r in rows} == {"A", "C"}
    a, _, c = world.spec.entities
    assert len(rows) == (a + c) * len(ATTRIBUTES) * world.spec.train_variants


def test_test_split_has_both_subjects_and_valid_answers(tmp_path):
    world = World()
    write_data(world, tmp_path)
    rows = [json.loads(x) for x in (tmp_path / "data" / "demo" / "test.jsonl").read_text().splitlines()]
    assert len(rows) >= 400
    assert {r["subject"] for r in rows} == {"shared", "sharer_only"}
    c_names = {f.entity for f in world.facts_of("C")}
    assert not any(name in r["question"] for r in rows for name in c_names)
    for r in rows:
        assert r["answerKey"] in r["choices"]["label"] and len(set(r["choices"]["text"])) == 4
    # every letter is the answer about equally often: no letter prior to exploit (values are uniform)
    counts = [sum(r["answerKey"] == x for r in rows) for x in "ABCD"]
    assert max(counts) - min(counts) < len(rows) * 0.1


def test_shipped_data_is_what_the_world_generates(tmp_path):
    write_data(World(), tmp_path)
    for rel in ("data/demo/test.jsonl", "data/fuser_train.jsonl"):
        assert (tmp_path / rel).read_bytes() == (SHIPPED / rel).read_bytes(), rel


def test_names_span_several_tokens_in_both_tokenizers():
    world = World()
    for family in ("qwen", "llama"):
        tok = build_demo_tokenizer(world, family)
        lengths = [len(tok(" " + n, add_special_tokens=False).input_ids) for n in world.names]
        assert min(lengths) >= 2, family
