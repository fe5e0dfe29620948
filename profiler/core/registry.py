"""A named registry filled by a decorator: raises on a duplicate and
suggests close names on a miss."""

from __future__ import annotations

import difflib
from typing import Callable, Generic, TypeVar

from lwprof.core.errors import LwprofError

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one kind (``what``: "regressor kind", "sampler"), by name, in registration order."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(entry: T) -> T:
            if name in self._entries:
                raise LwprofError(f"a {self.what} '{name}' is already registered")
            self._entries[name] = entry
            return entry

        return decorator

    def get(self, name: str) -> T:
        if name not in self._entries:
            close = difflib.get_close_matches(name, list(self._entries), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise LwprofError(f"unknown {self.what} '{name}'{hint} (known: {', '.join(self._entries)})")
        return self._entries[name]

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries
