"""The one pattern for every plug-in family (schemes, selectors, allocators, datasets, baselines).

A family is a name → class table, filled by a decorator in the module that defines the family's base
class. The manifest stores the name; `get` turns it back into a class, with a did-you-mean hint.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownPlugin(ValueError):
    """A ValueError, so that pydantic validators report it as a field error."""


class Plugins(Generic[T]):
    """Named members of one plug-in family (e.g. "quantization scheme")."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._members: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def decorate(cls: type[T]) -> type[T]:
            if name in self._members:
                old = self._members[name]
                raise ValueError(f"{self.family} {name!r} is already registered by {old.__module__}.{old.__qualname__}")
            self._members[name] = cls
            cls.name = name  # type: ignore[attr-defined]  # the public name, identical everywhere
            return cls

        return decorate

    def get(self, name: str) -> type[T]:
        try:
            return self._members[name]
        except KeyError:
            close = difflib.get_close_matches(str(name), self._members, n=1)
            hint = f"did you mean {close[0]!r}?; " if close else ""
            raise UnknownPlugin(f"unknown {self.family} {name!r} ({hint}known: {', '.join(self.names())})") from None

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._members))

    def __contains__(self, name: object) -> bool:
        return name in self._members

    def __len__(self) -> int:
        return len(self._members)
