"""Name → entry registries for models, data sets, methods and tasks; every entry says which tasks it serves."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from kdlab.core.errors import ConfigError, unknown_name

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered ``value`` (a builder, a method entry, a task) and the tasks it serves (None: every task).

    An entry that serves several tasks may pick one from its own options with ``task_of`` (a CoNLL-U data set
    holds tags or trees, by its ``task`` option)."""

    name: str
    value: T
    tasks: tuple[str, ...] | None = None
    task_of: Callable[[Mapping[str, Any]], str] | None = None

    def serves(self, task: str) -> bool:
        return self.tasks is None or task in self.tasks

    def task_for(self, options: Mapping[str, Any]) -> str:
        """The task this entry serves with ``options`` (its only task, or the one ``task_of`` picks)."""
        if self.task_of is not None:
            return self.task_of(options)
        if self.tasks is None or len(self.tasks) != 1:
            raise ValueError(f"{self.name!r} serves {self.tasks or 'every task'}; it needs task_of to pick one")
        return self.tasks[0]


class Registry(Generic[T]):
    """Maps names to entries; registering a name twice is a programming error.

    >>> MODELS = Registry("model")
    >>> @MODELS.register("mlp", tasks=("image_classification",))
    ... def mlp(num_classes: int = 10): ...
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def add(self, entry: Entry[T]) -> None:
        if entry.name in self._entries:
            raise ValueError(f"{self.kind} {entry.name!r} is registered twice")
        self._entries[entry.name] = entry

    def register(
        self,
        name: str,
        *,
        tasks: Iterable[str] | None = None,
        task_of: Callable[[Mapping[str, Any]], str] | None = None,
    ) -> Callable[[T], T]:
        def add(obj: T) -> T:
            self.add(Entry(name, obj, None if tasks is None else tuple(tasks), task_of))
            return obj

        return add

    def entry(self, name: str) -> Entry[T]:
        """The entry called ``name``; an unknown name is a :class:`~kdlab.core.errors.ConfigError`."""
        try:
            return self._entries[name]
        except KeyError:
            raise unknown_name(self.kind, name, self._entries) from None

    def get(self, name: str) -> T:
        return self.entry(name).value

    def for_task(self, name: str, task: str) -> T:
        """The entry ``name``, which must serve ``task``; else a ConfigError listing the entries that do."""
        entry = self.entry(name)
        if not entry.serves(task):
            raise ConfigError(
                f"The {self.kind} {name!r} serves {', '.join(entry.tasks or ())}, not {task}. "
                f"{self.kind.capitalize()}s for {task}: {', '.join(self.names(task)) or '(none)'}."
            )
        return entry.value

    def names(self, task: str | None = None) -> list[str]:
        """Every name, or the names of the entries that serve ``task``."""
        return sorted(n for n, e in self._entries.items() if task is None or e.serves(task))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
