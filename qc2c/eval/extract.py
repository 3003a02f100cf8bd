"""Answer-letter extraction from generated text, in C2C's order (generate protocol).

Source: thu-nics/C2C `rosetta/utils/evaluate.py::extract_answer_from_content` (see
docs/c2c.md §5). The order matters and is kept exactly:

1. answer phrases ("Answer:", "The answer is", "correct answer is", "Choice:", "Option:", Swahili forms, ...),
   matched case-insensitively; the first upper-case A-D character of the rest of that line wins;
2. a standalone letter at or near the end (three patterns, tried in turn, last match of the first pattern that
   matches), skipped when the text looks like maths and has no answer words;
3. the last `\\b[A-D]\\b` (case-insensitive), unless maths without answer words (then no answer);
4. the last upper-case A-D character anywhere.

The letter set is a parameter so sets with more options (A-J) reuse the same order; C2C's default is A-D.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Phrase prefixes in C2C's order. C2C lists upper/lower/title variants separately but matches them with
# IGNORECASE, so each distinct phrase appears once here; the first phrase found in the text wins.
ANSWER_PHRASES: tuple[str, ...] = (
    "Answer:",
    "Your answer:",
    "The answer is",
    "Correct answer is",
    "Correct answer is:",
    "Correct answer:",
    "Jibu lako:",
    "Jibu:",
    "Jibu sahihi:",
    "Response:",
    "Choice:",
    "Option:",
)
MATH_INDICATORS: tuple[str, ...] = ("+", "-", "*", "/", "=", "^", "x^", "y^", "z^", "mod", "sqrt", "sin", "cos", "tan")
ANSWER_WORDS: tuple[str, ...] = ("jibu", "answer", "choice", "option", "response", "correct", "sahihi")


@dataclass(frozen=True)
class Extraction:
    """The extracted letter (None when nothing matched) and which rule produced it."""

    letter: str | None
    method: str  # "phrase" | "standalone" | "word_boundary" | "any_char" | "none"


def _looks_like_math(text: str) -> bool:
    has_math = any(indicator in text for indicator in MATH_INDICATORS)
    has_answer_words = any(word in text.lower() for word in ANSWER_WORDS)
    return has_math and not has_answer_words


def extract_answer(text: str, letters: str = "ABCD") -> Extraction:
    """Return the answer letter C2C's evaluator would extract from `text` (generated, special tokens skipped)."""
    text = text.strip()
    if not text:
        return Extraction(None, "none")
    allowed = set(letters)
    cls = f"[{re.escape(letters[0])}-{re.escape(letters[-1])}]"

    for phrase in ANSWER_PHRASES:
        match = re.search(re.escape(phrase) + r"\s*(.*)", text, re.IGNORECASE)
        if match:
            for char in match.group(1).strip():
                if char in allowed:
                    return Extraction(char, "phrase")

    standalone = (
        rf"\b({cls})(?:\s*[.,!?:)]?\s*$)",
        rf"\b({cls})(?:\s*[.,!?:)]\s)",
        rf"(?:^|\s)({cls})(?:\s*$)",
    )
    for pattern in standalone:
        matches = re.findall(pattern, text, re.IGNORECASE)
        if matches:
            if _looks_like_math(text):
                continue
            return Extraction(matches[-1].upper(), "standalone")

    words = re.findall(rf"\b({cls})\b", text, re.IGNORECASE)
    if words:
        if _looks_like_math(text):
            return Extraction(None, "none")
        return Extraction(words[-1].upper(), "word_boundary")

    for char in reversed(text):
        if char in allowed:
            return Extraction(char, "any_char")
    return Extraction(None, "none")
