"""Readers of language-model data: plain documents (every token trained), prompt/completion pairs (the completion
trained) and chat conversations (``messages``, rendered by the tokenizer's chat template when they are tokenised;
the last assistant turn trained).

A split can come from a folder of text files (one document a file), one text file (one document), a JSONL file of
records with ``text``, ``prompt`` and ``completion`` or ``messages``, a ``datasets.Dataset`` or list of such records,
a mapping of columns, or a list of strings. Every problem is a :class:`~kdlab.core.errors.ConfigError` naming the
source, the bad value and what would be valid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kdlab.core.errors import ConfigError
from kdlab.data.text.labels import Table
from kdlab.data.text.readers import read_file, read_table

Kind = Literal["text", "prompt_completion", "chat"]
RECORD_SUFFIXES = (".jsonl", ".ndjson")


@dataclass
class LMData:
    """One split of language-model examples, all of one ``kind``: ``documents`` (``text``), ``prompts`` with
    ``completions`` (``prompt_completion``), or ``conversations`` — lists of ``{"role", "content"}`` messages whose
    last one is the assistant's (``chat``). ``source`` names where they came from (for messages)."""

    kind: Kind
    source: str
    documents: list[str] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    completions: list[str] = field(default_factory=list)
    conversations: list[list[dict[str, str]]] = field(default_factory=list)

    def __len__(self) -> int:
        return len({"text": self.documents, "prompt_completion": self.prompts, "chat": self.conversations}[self.kind])

    def subset(self, rows: Sequence[int]) -> LMData:
        """The examples ``rows``, in that order."""

        def pick(items: list[Any]) -> list[Any]:
            return [items[i] for i in rows] if items else []

        return LMData(self.kind, self.source, pick(self.documents), pick(self.prompts), pick(self.completions),
                      pick(self.conversations))  # fmt: skip

    @classmethod
    def empty(cls, kind: Kind = "text", source: str = "nothing") -> LMData:
        return cls(kind, source)


@dataclass(frozen=True)
class Columns:
    """The names of the columns that hold each part of an example."""

    text: str = "text"
    prompt: str = "prompt"
    completion: str = "completion"
    messages: str = "messages"


def read_lm(source: Any, columns: Columns = Columns(), encoding: str = "utf-8") -> LMData:
    """One split from ``source`` (see the module docstring). Which kind it is comes from its columns:
    ``messages`` → chat, ``prompt`` and ``completion`` → prompt/completion, ``text`` → documents."""
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if path.is_dir():
            return _folder(path, encoding)
        if not path.is_file():
            raise ConfigError(f"The language-model data {str(source)!r} is neither a file nor a folder.")
        if path.suffix.lower() not in RECORD_SUFFIXES:
            return LMData("text", str(path), documents=[_read_text(path, encoding)])
        return _from_table(read_file(path, format="jsonl", encoding=encoding), columns)
    if isinstance(source, Sequence) and not isinstance(source, str) and all(isinstance(s, str) for s in source):
        return LMData("text", "The list of texts", documents=list(source))
    if hasattr(source, "column_names") and hasattr(source, "features"):  # a datasets.Dataset
        if isinstance(source.column_names, Mapping):
            raise ConfigError(f"Got a DatasetDict of the splits {', '.join(map(repr, source.column_names))}: give "
                              "one split, such as dataset['train'].")  # fmt: skip
        return _from_table(Table({n: list(source[n]) for n in source.column_names}, "The Dataset", len(source), None),
                           columns)  # fmt: skip
    # pairs are (prompt, completion); records and mappings keep their own column names
    return _from_table(read_table(source, text=columns.prompt, label=columns.completion), columns)


def _read_text(path: Path, encoding: str) -> str:
    try:
        return path.read_bytes().decode(encoding)
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{path} is not {encoding} text ({error.reason} at byte {error.start}); give text files, or name their "
            "encoding with data.encoding=..."
        ) from None
    except OSError as error:
        raise ConfigError(f"Cannot read {path}: {error.strerror or error}.") from None


def _folder(path: Path, encoding: str) -> LMData:
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    return LMData("text", str(path), documents=[_read_text(p, encoding) for p in files])


def _from_table(table: Any, columns: Columns) -> LMData:
    names = set(table.columns)
    where = table.where
    if columns.messages in names:
        conversations = [_conversation(value, where, i) for i, value in enumerate(table.columns[columns.messages])]
        return LMData("chat", where, conversations=conversations)
    if columns.prompt in names and columns.completion in names:
        prompts = _strings(table.columns[columns.prompt], columns.prompt, where)
        completions = _strings(table.columns[columns.completion], columns.completion, where)
        return LMData("prompt_completion", where, prompts=prompts, completions=completions)
    if columns.text in names:
        return LMData("text", where, documents=_strings(table.columns[columns.text], columns.text, where))
    raise ConfigError(
        f"{where} has the columns {', '.join(map(repr, sorted(names))) or '(none)'}, but language-model data needs "
        f"{columns.text!r} (documents), {columns.prompt!r} and {columns.completion!r}, or {columns.messages!r} (chat); "
        "name yours with data.text=..., data.prompt=..., data.completion=... or data.messages=..."
    )


def _strings(values: list[Any], column: str, where: str) -> list[str]:
    for row, value in enumerate(values, start=1):
        if not isinstance(value, str):
            raise ConfigError(f"{where}, example {row}: the {column!r} value is {type(value).__name__}, not text.")
    return list(values)


def _conversation(value: Any, where: str, row: int) -> list[dict[str, str]]:
    ok = isinstance(value, Sequence) and value and all(
        isinstance(m, Mapping) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value
    )
    if not ok:
        raise ConfigError(
            f"{where}, example {row + 1}: messages must be a non-empty list of {{'role': ..., 'content': ...}} "
            f"mappings; got {str(value)[:80]!r}."
        )
    if value[-1]["role"] != "assistant":
        raise ConfigError(
            f"{where}, example {row + 1}: the last message is the {value[-1]['role']!r}'s, but a chat example trains "
            "the last assistant turn; end each conversation with an assistant message."
        )
    return [{"role": m["role"], "content": m["content"]} for m in value]
