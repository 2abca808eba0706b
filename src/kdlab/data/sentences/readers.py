"""Readers for the structured-prediction data sets: CoNLL-U dependency treebanks and CoNLL/IOB column files.

Both readers check the file as they go and stop at the first problem with a :class:`~kdlab.core.errors.DataError`
that names the file, the 1-based line number, the bad value and what would be valid, because a malformed
line found later (as a wrong tensor shape or a head outside the sentence) is much harder to trace back.

The locators find the two public corpora kdlab uses for structured distillation when their pip packages are
installed: the Turkish Web Treebank (``pip install --no-deps turkish-treebanks``, UD-style CoNLL-U) and the
Hironsan Japanese NER corpus (``pip install hironsancorpus``, IOB2 tags after MeCab feature columns).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import site
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from kdlab.core.errors import DataError, unknown_name

CONLLU_COLUMNS = 10
CHUNK_PREFIXES = ("B", "I", "E", "S")


@dataclass
class Sentence:
    """One sentence: its words, one tag per word and, for dependency treebanks, the tree.

    ``tags`` holds the UPOS tags of a CoNLL-U file or the NER tags (IOB1, IOB2 or IOBES strings) of a column
    file. ``heads[i]`` is 0 when word ``i + 1`` is the root, else the 1-based index of its head word;
    ``relations[i]`` is its dependency label (DEPREL). Both are ``None`` for column files.
    """

    words: list[str]
    tags: list[str]
    heads: list[int] | None = None
    relations: list[str] | None = None


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(1-based line number, text without the line ending)``; a line that is not UTF-8 is a DataError."""
    try:
        handle = path.open("rb")
    except OSError as error:
        raise DataError(f"Cannot read {path}: {error.strerror or error}.") from error
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise DataError(
                    f"{path}, line {number}: the file is not UTF-8 ({error.reason} at byte {error.start} of the "
                    f"line: {raw[:60]!r}). Save the file as UTF-8."
                ) from error
            if number == 1:
                text = text.removeprefix("\ufeff")
            yield number, text.rstrip("\r\n")


def _shorten(line: str, limit: int = 60) -> str:
    return line if len(line) <= limit else line[:limit] + "..."


def _as_int(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def read_conllu(path: str | Path) -> list[Sentence]:
    """Read a CoNLL-U file (https://universaldependencies.org/format.html) into sentences of words, UPOS tags,
    heads and dependency relations.

    ``#`` comment lines are skipped, a blank line ends a sentence (the last one may lack it), and multiword-token
    lines (ID ``3-4``) and empty nodes (ID ``5.1``) are skipped, so the words are the syntactic words the tree is
    over. Every word line must have 10 tab-separated columns, IDs must run 1, 2, 3, ..., HEAD must be an integer
    in ``[0, n]`` for a sentence of ``n`` words and differ from the word's own ID, and UPOS and DEPREL must be
    given (not empty and not ``_``). The first problem raises a DataError naming the file and the line.
    """
    path = Path(path)
    sentences: list[Sentence] = []
    rows: list[tuple[str, str, int, str, int]] = []  # (form, upos, head, deprel, line number) of each word

    def finish() -> None:
        for index, (_, _, head, _, number) in enumerate(rows):
            if not 0 <= head <= len(rows):
                raise DataError(
                    f"{path}, line {number}: HEAD {head} of word {index + 1} is outside the sentence; it must be 0 "
                    f"(the root) or the ID of a word of the same sentence, 1 to {len(rows)}."
                )
        if rows:
            forms, tags, heads, relations, _ = (list(column) for column in zip(*rows, strict=True))
            sentences.append(Sentence(forms, tags, heads, relations))
        rows.clear()

    for number, line in _lines(path):
        if not line.strip():
            finish()
            continue
        if line.startswith("#"):
            continue
        columns = line.split("\t")
        if len(columns) != CONLLU_COLUMNS:
            raise DataError(
                f"{path}, line {number}: expected {CONLLU_COLUMNS} tab-separated columns (CoNLL-U), found "
                f"{len(columns)}: {_shorten(line)!r}."
            )
        identifier, form, _, upos, _, _, head_text, relation = columns[:8]
        if re.fullmatch(r"\d+[-.]\d+", identifier):
            continue  # a multiword token or an empty node: not a node of the basic tree
        expected = len(rows) + 1
        if _as_int(identifier) != expected:
            raise DataError(
                f"{path}, line {number}: word ID {identifier!r} should be {expected}; IDs must run 1, 2, 3, ... "
                "within a sentence (multiword ranges like '3-4' and empty nodes like '5.1' are allowed)."
            )
        head = _as_int(head_text)
        if head is None:
            raise DataError(
                f"{path}, line {number}: HEAD {head_text!r} is not an integer; it must be 0 (the root) or the ID "
                "of the head word."
            )
        if head == expected:
            raise DataError(f"{path}, line {number}: word {expected} has itself as HEAD; a word cannot head itself.")
        for name, column, value in (("UPOS", 4, upos), ("DEPREL", 8, relation)):
            if value.strip() in ("", "_"):
                raise DataError(
                    f"{path}, line {number}: {name} (column {column}) is {value!r}; every word needs a {name} for "
                    "kdlab to train on it."
                )
        rows.append((form, upos, head, relation, number))
    finish()
    if not sentences:
        raise DataError(f"{path} contains no sentences: expected CoNLL-U word lines (10 tab-separated columns).")
    return sentences


def _check_tag(tag: str, path: Path, number: int) -> None:
    prefix, dash, kind = tag.partition("-")
    if tag == "O" or (prefix in CHUNK_PREFIXES and dash and kind):
        return
    raise DataError(
        f"{path}, line {number}: tag {tag!r} is not a chunk tag; valid tags are 'O' or B-, I-, E- or S- followed "
        "by an entity type, such as 'B-PER' (IOB1, IOB2 and IOBES)."
    )


def read_columns(
    path: str | Path, *, token_column: int = 0, tag_column: int = -1, separator: str | None = None
) -> list[Sentence]:
    """Read a CoNLL-2003 style column file (one token per line, a blank line between sentences) into sentences of
    words and NER tags.

    Columns are split on any whitespace, or on ``separator`` (such as ``"\\t"`` for files whose tokens or features
    hold spaces: the Hironsan corpus needs it, since some of its tokens are the ideographic space U+3000).
    ``-DOCSTART-`` lines are skipped. With the default ``tag_column=-1`` the tag is the last column and the number
    of columns may vary from line to line (at least 2), as in the Hironsan corpus where MeCab gives 10 or 12 feature
    columns; with any other ``tag_column`` every line must have as many columns as the first token line. Tags
    must be ``O`` or ``B-X``, ``I-X``, ``E-X``, ``S-X`` with a non-empty type ``X``.
    """
    path = Path(path)
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    expected_columns: int | None = None
    needed = max(2, token_column + 1, tag_column + 1 if tag_column >= 0 else -tag_column)

    def finish() -> None:
        if words:
            sentences.append(Sentence(list(words), list(tags)))
        words.clear()
        tags.clear()

    for number, line in _lines(path):
        columns = line.split(separator)
        if not line.strip():
            finish()
            continue
        if columns[0] == "-DOCSTART-":
            finish()
            continue
        if expected_columns is None:
            expected_columns = len(columns)
        if tag_column != -1 and len(columns) != expected_columns:
            raise DataError(
                f"{path}, line {number}: expected {expected_columns} columns like the first token line, found "
                f"{len(columns)}: {_shorten(line)!r}. Every line must have the same number of columns."
            )
        if len(columns) < needed:
            raise DataError(
                f"{path}, line {number}: found {len(columns)} column(s) but at least {needed} are needed "
                f"(token column {token_column}, tag column {tag_column}, counted from 0): {_shorten(line)!r}."
            )
        tag = columns[tag_column]
        _check_tag(tag, path, number)
        words.append(columns[token_column])
        tags.append(tag)
    finish()
    if not sentences:
        raise DataError(f"{path} contains no sentences: expected lines of a token and a tag, such as 'Paris B-LOC'.")
    return sentences


def turkish_treebank_files() -> list[Path]:
    """``[web.conllu, wiki.conllu]`` of the Turkish Web Treebank that ``pip install --no-deps turkish-treebanks``
    puts in ``data/`` at the top of site-packages (found through the package's file list, else by scanning the
    site-packages folders)."""
    names = ("data/web.conllu", "data/wiki.conllu")
    try:
        distribution = importlib.metadata.distribution("turkish-treebanks")
        listed = {str(entry).replace("\\", "/"): entry for entry in distribution.files or []}
        found = [Path(distribution.locate_file(listed[name])) for name in names if name in listed]
        if len(found) == len(names) and all(file.is_file() for file in found):
            return found
    except importlib.metadata.PackageNotFoundError:
        pass
    folders = [*site.getsitepackages(), site.getusersitepackages()]
    for folder in folders:
        found = [Path(folder) / name for name in names]
        if all(file.is_file() for file in found):
            return found
    raise DataError(
        "The Turkish Web Treebank is not installed: run `pip install --no-deps turkish-treebanks` (it puts "
        f"data/web.conllu and data/wiki.conllu in site-packages; searched {', '.join(folders)}), or point "
        "`data.files=` at your own CoNLL-U files."
    )


def hironsan_file() -> Path:
    """``hironsan/corpus/iob_sents.txt`` of ``pip install hironsancorpus``, found without importing
    ``hironsan.corpus`` (importing it reads and splits the whole file)."""
    spec = importlib.util.find_spec("hironsan")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        file = Path(folder) / "corpus" / "iob_sents.txt"
        if file.is_file():
            return file
    raise DataError(
        "The Hironsan Japanese NER corpus is not installed: run `pip install hironsancorpus`, or point "
        "`data.files=` at your own IOB column files."
    )


def split_by_index(sentences: Sequence[Sentence], part: str) -> list[Sentence]:
    """The Turkish treebank split by sentence index ``i`` (web then wiki): train ``i % 10 < 8``, dev ``i % 10 == 8``,
    test ``i % 10 == 9``."""
    keep = {"train": range(8), "dev": (8,), "test": (9,)}
    if part not in keep:
        raise unknown_name("split", part, keep)
    return [sentence for index, sentence in enumerate(sentences) if index % 10 in keep[part]]


def hironsan_split(sentences: Sequence[Sentence], part: str) -> list[Sentence]:
    """The Hironsan corpus's own split: the first ``int(0.9 N)`` sentences train, the rest test (450 / 50)."""
    if part not in ("train", "test"):
        raise unknown_name("split", part, ("train", "test"))
    cut = int(len(sentences) * 0.9)
    return list(sentences[:cut] if part == "train" else sentences[cut:])
