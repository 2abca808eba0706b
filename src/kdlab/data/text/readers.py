"""Readers of text-classification splits: texts, one integer label each, and the names of the labels.

A split can come from a CSV or JSONL file, a Hugging Face ``datasets.Dataset``, a list of ``(text, label)`` pairs or
a mapping of columns (``{"text": [...], "label": [...]}``). Every source first becomes the same table of columns
and then goes through the same checks (:mod:`kdlab.data.text.labels`), so the same examples give the same
:class:`~kdlab.data.text.labels.TextData` whatever they came from. Each problem is a
:class:`~kdlab.core.errors.ConfigError` naming the source, the bad value and what would be valid.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kdlab.core.errors import ConfigError, unknown_name
from kdlab.data.text.labels import Table, TextData, to_text_data

FORMATS = ("csv", "jsonl")
SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def read_texts(
    source: Any,
    *,
    text: str = "text",
    label: str = "label",
    label_names: Sequence[str] | None = None,
    format: str | None = None,
    encoding: str = "utf-8",
) -> TextData:
    """One split from ``source``: a path to a CSV or JSONL file (the format from the suffix, or ``format=``), a
    ``datasets.Dataset``, a list of ``(text, label)`` pairs, a list of records (dicts) or a mapping of columns.

    ``text``/``label`` name the columns. Labels may be integers (class ids) or strings (class names); the classes
    are ``label_names`` when given (a ``ClassLabel`` column of a Dataset gives its own), else ``0..max`` for
    integer labels and the sorted distinct names for string labels. Files are decoded with ``encoding``.
    """
    return to_text_data(read_table(source, format=format, encoding=encoding, text=text, label=label),
                        text=text, label=label, label_names=label_names)  # fmt: skip


def read_table(
    source: Any, *, format: str | None = None, encoding: str = "utf-8", text: str = "text", label: str = "label"
) -> Table:
    """The columns of ``source`` (see :func:`read_texts`) without any checks of their values; pairs become the
    columns ``text`` and ``label``."""
    if isinstance(source, (str, Path)):
        return read_file(source, format=format, encoding=encoding)
    if hasattr(source, "column_names") and hasattr(source, "features"):
        return _from_dataset(source, text, label)
    if isinstance(source, Mapping):
        return _from_mapping(source)
    if isinstance(source, Sequence) or hasattr(source, "__iter__"):
        return _from_rows(list(source), text, label)
    raise ConfigError(
        f"Cannot read text-classification data from a {type(source).__name__}: give a path to a CSV or JSONL file, "
        "a datasets.Dataset, a list of (text, label) pairs or a mapping of columns such as "
        "{'text': [...], 'label': [...]}."
    )


def read_file(path: str | Path, *, format: str | None = None, encoding: str = "utf-8") -> Table:
    """The columns of a CSV file (a header row, then one example a row) or a JSONL file (one JSON object a line)."""
    path = Path(path)
    kind = format.lower() if format else SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ConfigError(
            f"Cannot tell the format of {path} from its suffix {path.suffix!r}: name it .csv or .jsonl, or give "
            "format='csv' or format='jsonl'."
        )
    if kind not in FORMATS:
        raise unknown_name("text file format", kind, FORMATS)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"Cannot read the text file {path}: {error.strerror or error}.") from error
    try:
        content = raw.decode(encoding)
    except LookupError:
        raise ConfigError(f"Unknown text encoding {encoding!r} for {path}; try 'utf-8' or 'latin-1'.") from None
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise ConfigError(
            f"{path}, line {line}: the file is not {encoding} ({error.reason} at byte {error.start}). Save it as "
            f"UTF-8, or name its encoding with encoding=..., such as encoding='latin-1'."
        ) from None
    content = content.removeprefix("\ufeff")
    return _from_csv(content, path) if kind == "csv" else _from_jsonl(content, path)


def _from_csv(content: str, path: Path) -> Table:
    reader = csv.reader(io.StringIO(content, newline=""))
    header: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank lines carry no example
            if header is None:
                header = [name.strip() for name in row]
                continue
            if len(row) != len(header):
                raise ConfigError(
                    f"{path}, line {reader.line_num}: {len(row)} fields, but the header has {len(header)} "
                    f'({", ".join(map(repr, header))}). Quote texts that hold commas, like "one, two".'
                )
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as error:
        raise ConfigError(f"{path}, line {reader.line_num}: not a valid CSV file ({error}).") from None
    if header is None:
        raise ConfigError(f"{path} is empty: a CSV file of texts needs a header row, such as 'text,label'.")
    columns = {name: [row[i] for row in rows] for i, name in enumerate(header)}
    return Table(columns, str(path), len(rows), lines)


def _from_jsonl(content: str, path: Path) -> Table:
    records: list[Mapping[str, Any]] = []
    lines: list[int] = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{path}, line {number}: not JSON ({error.msg}, column {error.colno}).") from None
        if not isinstance(record, dict):
            raise ConfigError(
                f"{path}, line {number}: a JSON {type(record).__name__}, but each line of a JSONL file of texts "
                'must be an object such as {"text": "...", "label": "..."}.'
            )
        records.append(record)
        lines.append(number)
    return _records(records, str(path), lines)


def _records(records: Sequence[Mapping[str, Any]], where: str, lines: list[int] | None) -> Table:
    names = list(dict.fromkeys(key for record in records for key in record))  # first-seen order
    columns = {name: [record.get(name) for record in records] for name in names}
    return Table(columns, where, len(records), lines)


def _from_dataset(dataset: Any, text: str, label: str) -> Table:
    names = list(dataset.column_names)
    if isinstance(names, Mapping) or (names and not isinstance(names[0], str)):
        raise ConfigError(
            f"Got a DatasetDict of the splits {', '.join(map(repr, names))}: give one split, such as dataset['train']."
        )
    wanted = [name for name in (text, label) if name in names]
    columns = {name: list(dataset[name]) if name in wanted else [] for name in names}
    table = Table(columns, "The Dataset", len(dataset), None)
    feature = dataset.features.get(label) if label in wanted else None
    if feature is not None and getattr(feature, "names", None):
        table.label_names = list(feature.names)  # a ClassLabel column knows its classes
    return table


def _from_mapping(mapping: Mapping[str, Any]) -> Table:
    if any(hasattr(value, "column_names") for value in mapping.values()):
        raise ConfigError(
            f"Got a DatasetDict of the splits {', '.join(map(repr, mapping))}: give one split, such as "
            "dataset['train']."
        )
    columns = {str(name): _as_list(values, name) for name, values in mapping.items()}
    sizes = {name: len(values) for name, values in columns.items()}
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{name!r}: {size}" for name, size in sizes.items())
        raise ConfigError(f"The columns of the mapping have different lengths ({listed}); each needs one value a text.")
    return Table(columns, "The mapping of columns", next(iter(sizes.values()), 0), None)


def _as_list(values: Any, name: Any) -> list[Any]:
    if isinstance(values, str) or not hasattr(values, "__len__"):
        raise ConfigError(f"Column {name!r} of the mapping is a {type(values).__name__}, not a list of values.")
    return values.tolist() if hasattr(values, "tolist") else list(values)  # tensors and arrays give Python values


def _from_rows(rows: list[Any], text: str, label: str) -> Table:
    if rows and all(isinstance(row, Mapping) for row in rows):
        return _records(rows, "The list of records", None)
    for number, row in enumerate(rows, start=1):
        if isinstance(row, str) or not isinstance(row, Sequence) or len(row) != 2:
            raise ConfigError(
                f"Row {number} of the list of pairs is {_short(row)}, not a (text, label) pair; give pairs such "
                "as ('a fine day', 'positive')."
            )
    columns = {text: [row[0] for row in rows], label: [row[1] for row in rows]}
    return Table(columns, "The list of pairs", len(rows), None)


def _short(value: Any, limit: int = 60) -> str:
    shown = repr(value)
    return shown if len(shown) <= limit else shown[:limit] + "..."
