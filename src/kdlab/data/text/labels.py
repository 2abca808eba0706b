"""The checks every text-classification split goes through, and the mapping of its labels to class ids.

The readers (:mod:`kdlab.data.text.readers`) turn each source into a :class:`Table` of columns; this module checks
that the text and label columns exist, that every text is a non-blank string and every label a known class, and
gives the split as a :class:`TextData`. Problems are reported all at once per kind (how many, and the first few
rows) because a file with one blank text usually has more.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from kdlab.core.errors import ConfigError, suggest

SHOWN = 5  # how many row numbers an error lists
INTEGER = re.compile(r"[+-]?\d+")


@dataclass
class TextData:
    """One split: ``texts``, ``labels`` int64 ``[N]`` (class ids into ``label_names``) and the class names."""

    texts: list[str]
    labels: torch.Tensor
    label_names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    @classmethod
    def empty(cls, label_names: Sequence[str] = ()) -> TextData:
        """A split without examples (a data set without a validation split)."""
        return cls([], torch.zeros(0, dtype=torch.long), list(label_names))

    def subset(self, indices: Sequence[int]) -> TextData:
        """The examples at ``indices``, in that order."""
        return TextData([self.texts[i] for i in indices], self.labels[list(indices)], list(self.label_names))


@dataclass
class Table:
    """A source's columns before any check: ``where`` names the source in errors, ``lines[i]`` is the file line of
    row ``i`` (None for sources that are not files) and ``label_names`` the classes the source itself declares."""

    columns: dict[str, list[Any]]
    where: str
    rows: int
    lines: list[int] | None = None
    label_names: list[str] | None = None

    def places(self, rows: Sequence[int]) -> str:
        """``"lines 3, 8 and 9"`` (files) or ``"rows 3, 8 and 9"`` (counted from 1) for the first few ``rows``."""
        numbers = [str(self.lines[i] if self.lines else i + 1) for i in rows[:SHOWN]]
        kind = ("line" if self.lines else "row") + ("s" if len(rows) > 1 else "")
        listed = numbers[0] if len(numbers) == 1 else ", ".join(numbers[:-1]) + " and " + numbers[-1]
        return f"{kind} {listed}" + (f" and {len(rows) - SHOWN} more" if len(rows) > SHOWN else "")


def to_text_data(
    table: Table, *, text: str = "text", label: str = "label", label_names: Sequence[str] | None = None
) -> TextData:
    """The checked split of ``table``: its ``text`` column, and its ``label`` column as class ids of
    ``label_names`` (else the classes the source declares, else those found: see
    :func:`kdlab.data.text.readers.read_texts`)."""
    if table.rows == 0:
        raise ConfigError(f"{table.where} holds no examples; a split needs at least one labelled text.")
    for role, name in (("text", text), ("label", label)):
        if name not in table.columns:
            existing = ", ".join(map(repr, table.columns)) or "(none)"
            raise ConfigError(
                f"{table.where} has no {role} column {name!r}.{suggest(name, table.columns)} Its columns are: "
                f"{existing}; name the {role} column with {role}=..."
            )
    texts = table.columns[text]
    check_texts(texts, table)
    names = label_names if label_names is not None else table.label_names
    ids, classes = label_ids(table.columns[label], table, names)
    return TextData(list(texts), torch.tensor(ids, dtype=torch.long), classes)


def check_texts(texts: Sequence[Any], table: Table) -> None:
    """Every text must be a string with something in it besides white space."""
    wrong = [i for i, value in enumerate(texts) if not isinstance(value, str)]
    if wrong:
        kinds = sorted({type(texts[i]).__name__ for i in wrong})
        raise ConfigError(
            f"{table.where}: {len(wrong)} text(s) are not strings but {', '.join(kinds)} ({table.places(wrong)}; "
            "None means the value is missing). Every example needs its text as a string."
        )
    blank = [i for i, value in enumerate(texts) if not value.strip()]
    if blank:
        raise ConfigError(
            f"{table.where}: {len(blank)} of {len(texts)} text(s) are empty or blank ({table.places(blank)}). "
            "Remove those examples or fill in their texts."
        )


def _normalise(value: Any, names: Sequence[str] | None) -> int | str | None:
    """A class id, a class name, or None when ``value`` can be neither."""
    if isinstance(value, bool):
        return None  # True/False would pass as 1/0 and hide a wrong column
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)  # JSON and pandas may write class ids as 1.0
    if isinstance(value, str) and value.strip():
        stripped = value.strip()
        if (names is None or stripped not in names) and INTEGER.fullmatch(stripped):
            return int(stripped)  # CSV files hold every label as text: "2" is class id 2, as in a JSONL file
        return stripped
    return None


def label_ids(values: Sequence[Any], table: Table, names: Sequence[str] | None = None) -> tuple[list[int], list[str]]:
    """The class id of each label and the class names: ``names`` when given, else ``"0".."max"`` for integer labels
    and the sorted distinct names for string labels."""
    if names is not None:
        names = _check_names(names)
    normal = [_normalise(value, names) for value in values]
    bad = [i for i, value in enumerate(normal) if value is None]
    if bad:
        kinds = sorted({repr(values[i]) if isinstance(values[i], str) else type(values[i]).__name__ for i in bad})
        raise ConfigError(
            f"{table.where}: {len(bad)} label(s) are neither class names (strings) nor class ids (integers): "
            f"{', '.join(kinds[:SHOWN])} ({table.places(bad)}). Every example needs a label."
        )
    if names is None:
        strings = sorted({value for value in normal if isinstance(value, str)})
        integers = [value for value in normal if isinstance(value, int)]
        if strings and integers:
            raise ConfigError(
                f"{table.where}: the labels mix class names (such as {strings[0]!r}) and class ids (such as "
                f"{integers[0]}). Use one kind, or give label_names=[...] so that ids index those names."
            )
        names = strings or [str(i) for i in range(max(max(integers), 0) + 1)]
    index = {name: i for i, name in enumerate(names)}
    ids = [index.get(value, -1) if isinstance(value, str) else value for value in normal]
    unknown = [i for i, id_ in enumerate(ids) if not 0 <= id_ < len(names)]  # an unknown name has id -1
    if unknown:
        shown = list(dict.fromkeys(normal[i] for i in unknown))
        hint = suggest(shown[0], names) if isinstance(shown[0], str) else ""
        raise ConfigError(
            f"{table.where}: {len(unknown)} label(s) are not among the {len(names)} classes: "
            f"{', '.join(map(repr, shown[:SHOWN]))} ({table.places(unknown)}).{hint} Valid labels: the names "
            f"{', '.join(map(repr, names))} or their ids 0 to {len(names) - 1}."
        )
    return [int(id_) for id_ in ids], list(names)


def _check_names(names: Sequence[str]) -> list[str]:
    if isinstance(names, str) or not all(isinstance(name, str) and name for name in names) or not names:
        raise ConfigError(f"label_names must be a non-empty list of class names (strings), not {names!r}.")
    if len(set(names)) != len(names):
        twice = sorted({name for name in names if list(names).count(name) > 1})
        raise ConfigError(f"label_names names a class twice: {', '.join(map(repr, twice))}; each class once.")
    return list(names)
