"""python -m pytest tests/qc2c/eval/test_extract.py -q

Cases follow the rule order of C2C's `extract_answer_from_content` (docs/c2c.md §5).
"""

from __future__ import annotations

import pytest

from qc2c.eval.extract import extract_answer


@pytest.mark.parametrize(
    ("text", "letter", "method"),
    [
        ("The correct answer is B", "B", "phrase"),
        ("the correct answer is: c", "C", "standalone"),  # phrase rule wants upper case; end letter any case
        ("Answer: (C) because", "C", "phrase"),
        ("answer: the option D", "D", "phrase"),  # first upper-case A-D char after the phrase
        ("I pick b.", "B", "standalone"),  # case-insensitive standalone letter at the end
        ("B) is wrong, C) too, so", "C", "standalone"),  # letter + punctuation + space, last match
        ("Between B and D I choose D for sure", "D", "word_boundary"),
        ("xyzA", "A", "any_char"),
        ("x = y + 1 so B", None, "none"),  # maths without answer words: standalone and word rules skip
        ("", None, "none"),
    ],
)
def test_extraction_order(text: str, letter: str | None, method: str | None) -> None:
    result = extract_answer(text)
    assert result.letter == letter
    assert result.method == method


def test_phrase_without_letter_falls_through_to_later_rules() -> None:
    assert extract_answer("Answer: none of them. D").letter == "D"


def test_phrase_rule_beats_a_later_standalone_letter() -> None:
    assert extract_answer("The answer is A. Not B").letter == "A"


def test_math_with_answer_words_still_extracts() -> None:
    assert extract_answer("2 + 2 = 4, correct is C").letter == "C"


def test_letters_beyond_d_for_ten_option_sets() -> None:
    assert extract_answer("The answer is J", letters="ABCDEFGHIJ").letter == "J"
    assert extract_answer("The answer is J").method != "phrase"
