"""A tiny name → object registry used for models, data sets, methods and pretrained weights."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from kdlab.core.errors import unknown_name

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to builders; registering a name twice is a programming error.

    >>> MODELS = Registry("model")
    >>> @MODELS.register("mlp")
    ... def mlp(num_classes: int = 10): ...
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        """The entry called ``name``; an unknown name is a :class:`~kdlab.core.errors.ConfigError`."""
        try:
            return self._entries[name]
        except KeyError:
            raise unknown_name(self.kind, name, self._entries) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
