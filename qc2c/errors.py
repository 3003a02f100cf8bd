"""`ProblemsError`: the one base of every error that reports all the problems it found, not just the first.

A manifest, a results file, a golden file, a targets file, a plan or a pair/fuser check can each be wrong
in several places at once; the error lists them all in `.problems`, one line each, so that a user fixes
them in one pass. Callers that report problems catch `ProblemsError` and read `.problems`. The module
imports nothing, so any layer (qc2c, runner, remote) can raise it.
"""

from __future__ import annotations

from collections.abc import Iterable


class ProblemsError(ValueError):
    """Every problem found, one line each, in `.problems`; the message is those lines joined by newlines,
    or `message` when the raiser words the whole differently."""

    def __init__(self, problems: Iterable[str], message: str | None = None) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems) if message is None else message)
