"""The demo world: made-up entities with attributes, split into who-knows-what, deterministic from a seed.

Why it exists: on random weights C2C cannot transfer anything, so no offline number could show that a
message carries knowledge. Here the sharer is trained on facts the receiver never sees, so a receiver that
answers them through the fused cache is reading the message.

* Entities have made-up names of three syllables (``Bafeku``); the demo tokenizers never see a whole name,
  so every name spans several tokens and a fact has to be assembled in the models' deeper layers rather than
  sit in one name embedding.
* A fact is (entity, attribute, value).
* Entities are split into four disjoint groups, and so are their facts:
  ``A`` known to both models, ``C`` known to the sharer only and used to train the fuser, ``B`` known to the
  sharer only and used only to *test* it, ``V`` like B but used to *choose* training settings (the
  validation split), so that no setting is tuned on the items it is reported on. The fuser never sees a B
  or V fact, so a gain on them is communication, not memorisation by the projector.
* Every entity has one value per attribute (4 values each, drawn uniformly). The test split asks one
  multiple-choice question per A fact (subject ``shared``) and per B fact (subject ``sharer_only``) in the
  ARC/OpenBookQA schema; the validation split asks one per V fact (``sharer_only``) and per tenth A entity's
  facts (``shared``). The options are the attribute's four values in a fixed order (see `ask`).
* Entities are numbered A first, then B, C, V: the sharers know every fact, in the same order whatever the
  split sizes, so re-splitting the sharer-only entities never changes what a sharer is trained on.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"
SYLLABLES = tuple(c + v for c in CONSONANTS for v in VOWELS)  # 70 open syllables
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "color": ("red", "blue", "green", "yellow"),
    "home": ("forest", "desert", "island", "mountain"),
    "pet": ("cat", "dog", "horse", "owl"),
}
QUESTIONS = {
    "color": "What is the color of {name}?",
    "home": "Where does {name} live?",
    "pet": "Which pet does {name} keep?",
}
STATEMENTS = {
    "color": ("{name}'s color is {value}.", "The color of {name} is {value}."),
    "home": ("{name} lives in the {value}.", "The home of {name} is the {value}."),
    "pet": ("{name} keeps a {value}.", "The pet of {name} is a {value}."),
}
SPLITS = ("A", "B", "C", "V")
SUBJECTS = {"A": "shared", "B": "sharer_only", "V": "sharer_only"}  # C never appears in an evaluation split
LABELS = ("A", "B", "C", "D")


@dataclass(frozen=True)
class WorldSpec:
    """Everything that determines a world; two equal specs give identical worlds and files."""

    seed: int = 0
    # entities in A, B, C, V (x3 attributes = facts): 180 shared + 225 sharer_only test items, 45 + 18
    # validation items; few entities with several facts each, because telling 3-syllable names apart is what
    # the small sharers learn slowest (360 entities with two facts each did not train in 20 minutes on two
    # cores; 180 with three do). 30 C entities suffice: the fuser learns to read the sharer's answer, not facts.
    entities: tuple[int, ...] = (60, 75, 30, 15)
    train_variants: int = 1  # copies of each fact's question in the fuser's training data (epochs repeat them)


@dataclass(frozen=True)
class Fact:
    entity: str
    attribute: str
    value: str
    split: str  # "A" | "B" | "C" | "V"
    index: int  # entity index within the world

    @property
    def key(self) -> str:
        return f"{self.split}{self.index:04d}-{self.attribute}"

    @property
    def question(self) -> str:
        return QUESTIONS[self.attribute].format(name=self.entity)

    def statements(self) -> list[str]:
        return [t.format(name=self.entity, value=self.value) for t in STATEMENTS[self.attribute]]


@dataclass(frozen=True)
class MCQuestion:
    """One multiple-choice question about a fact; `answer` is the label of the fact's value."""

    fact: Fact
    choices: tuple[str, ...]
    answer: str

    def as_row(self, item_id: str) -> dict:
        """The ARC/OpenBookQA schema (+ subject), as `qc2c.eval.datasets` reads it."""
        return {
            "id": item_id,
            "question": self.fact.question,
            "choices": {"text": list(self.choices), "label": list(LABELS[: len(self.choices)])},
            "answerKey": self.answer,
            "subject": SUBJECTS.get(self.fact.split, "sharer_only"),
        }


def rng_for(*parts: object) -> random.Random:
    """A generator seeded by a stable hash of `parts` (independent of call order and of PYTHONHASHSEED)."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


def ask(fact: Fact) -> MCQuestion:
    """The attribute's four values as the options, always in the same order.

    A fixed order keeps the answer format one step (fact -> value -> its letter), which models of this size
    learn from scratch in minutes; with shuffled options they sat at a constant letter for thousands of
    steps on two CPU cores. The letter still says nothing without the fact: values are drawn uniformly."""
    options = ATTRIBUTES[fact.attribute]
    return MCQuestion(fact, tuple(options), LABELS[options.index(fact.value)])


class World:
    """The entities, their facts and the A/B/C split of a WorldSpec."""

    def __init__(self, spec: WorldSpec | None = None) -> None:
        self.spec = spec or WorldSpec()

    @cached_property
    def names(self) -> tuple[str, ...]:
        """Distinct three-syllable names, capitalised; drawn without replacement from the seed."""
        rng = rng_for(self.spec.seed, "names")
        n = sum(self.spec.entities)
        seen: dict[str, None] = {}
        while len(seen) < n:
            name = "".join(rng.choice(SYLLABLES) for _ in range(3)).capitalize()
            seen.setdefault(name, None)
        return tuple(seen)

    @cached_property
    def facts(self) -> tuple[Fact, ...]:
        rng = rng_for(self.spec.seed, "values")
        splits = [s for s, n in zip(SPLITS, self.spec.entities) for _ in range(n)]
        out = []
        for i, (name, split) in enumerate(zip(self.names, splits)):
            for attr, values in ATTRIBUTES.items():
                out.append(Fact(name, attr, rng.choice(values), split, i))
        return tuple(out)

    def facts_of(self, *splits: str) -> list[Fact]:
        return [f for f in self.facts if f.split in splits]

    def test_questions(self) -> Iterator[tuple[str, MCQuestion]]:
        """(item id, question) for every A and B fact: the `demo` test split, A first, then B."""
        for fact in self.facts_of("A") + self.facts_of("B"):
            yield f"demo-{fact.key}", ask(fact)

    def validation_questions(self) -> Iterator[tuple[str, MCQuestion]]:
        """The `demo` validation split: every V fact (sharer_only) and the facts of every tenth A entity
        (shared, to see damage to what the receiver knows); for choosing training settings, never reported."""
        shared = [f for f in self.facts_of("A") if f.index % 10 == 0]
        for fact in shared + self.facts_of("V"):
            yield f"demo-{fact.key}", ask(fact)

    def fuser_questions(self, *splits: str) -> Iterator[MCQuestion]:
        """The fuser's training questions: C facts (what it must learn to carry) and A facts (so fusion learns
        to keep what the receiver already knows), `train_variants` times each. Never a B or V fact."""
        if set(splits) - {"A", "C"}:
            raise ValueError(f"fuser training data holds A and C facts only (asked for {splits})")
        for fact in self.facts_of(*(splits or ("C", "A"))):
            for _ in range(self.spec.train_variants):
                yield ask(fact)

    def corpus_words(self) -> list[str]:
        """Text the demo tokenizers are trained on: every template, value and syllable, but never a whole name."""
        lines = [" ".join(v) for v in ATTRIBUTES.values() for _ in range(10)] + ["system user assistant"] * 10
        lines += [q.format(name="X") for q in QUESTIONS.values()]
        lines += [t.format(name="X", value=v) for a, ts in STATEMENTS.items() for t in ts for v in ATTRIBUTES[a]]
        lines += [" ".join(s.capitalize() for s in SYLLABLES), " ".join(SYLLABLES)] * 4
        return lines
