"""Sentence data sets, registered in :data:`kdlab.data.DATASETS`: the Turkish treebank (UPOS tagging, dependency
parsing), Japanese NER (hironsancorpus), and the user's own CoNLL-U or CoNLL-2003 column files."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdlab.data.base import DATASETS
from kdlab.data.sentences.encoding import Task
from kdlab.data.sentences.readers import (
    Sentence,
    hironsan_file,
    hironsan_split,
    read_columns,
    read_conllu,
    split_by_index,
    turkish_treebank_files,
)

TAGGING, PARSING = ("sequence_labelling",), ("dependency_parsing",)


@dataclass
class SequenceSplits:
    """Sentences of each split (``val`` may be empty) and the kind of labels they carry."""

    name: str
    task: Task
    train: list[Sentence]
    val: list[Sentence] = field(default_factory=list)
    test: list[Sentence] = field(default_factory=list)
    inventory: list[Sentence] = field(default_factory=list)  # the whole training split: its tags and relations


def _turkish(task: Task, name: str) -> SequenceSplits:
    sentences = [s for path in turkish_treebank_files() for s in read_conllu(path)]
    return SequenceSplits(name, task, *(split_by_index(sentences, part) for part in ("train", "dev", "test")))


@DATASETS.register("turkish_pos", tasks=TAGGING)
def turkish_pos() -> SequenceSplits:
    """Turkish treebank (turkish-treebanks, web + wiki), UPOS tags; sentence i % 10: < 8 train, 8 dev, 9 test."""
    return _turkish("tagging", "turkish_pos")


@DATASETS.register("turkish_deps", tasks=PARSING)
def turkish_deps() -> SequenceSplits:
    """Turkish treebank, dependency trees (heads and relations); the same splits as turkish_pos."""
    return _turkish("parsing", "turkish_deps")


@DATASETS.register("hironsan_ner", tasks=TAGGING)
def hironsan_ner() -> SequenceSplits:
    """Japanese NER (hironsancorpus, IOB2, 8 entity types): the package's own split, 450 train / 50 test."""
    sentences = read_columns(hironsan_file(), separator="\t")
    return SequenceSplits("hironsan_ner", "tagging", hironsan_split(sentences, "train"), [],
                          hironsan_split(sentences, "test"))  # fmt: skip


def _conllu_task(options: Mapping[str, Any]) -> str:
    return "dependency_parsing" if options.get("task") == "parsing" else "sequence_labelling"


@DATASETS.register("conllu", tasks=TAGGING + PARSING, task_of=_conllu_task)
def conllu(train: str, dev: str | None = None, test: str | None = None, task: Task = "tagging") -> SequenceSplits:
    """Your CoNLL-U files (``data.train``, ``data.dev``, ``data.test``); ``data.task``: tagging (UPOS) or parsing."""
    parts = {k: read_conllu(Path(p)) for k, p in (("train", train), ("dev", dev), ("test", test)) if p}
    return SequenceSplits("conllu", task, parts["train"], parts.get("dev", []), parts.get("test", []))


@DATASETS.register("conll2003", tasks=TAGGING)
def conll2003(
    train: str, dev: str | None = None, test: str | None = None, token_column: int = 0, tag_column: int = -1
) -> SequenceSplits:
    """Your CoNLL-2003-style column files (token in ``data.token_column``, default 0; tag in ``data.tag_column``,
    default the last), ``data.train``/``dev``/``test``; ``-DOCSTART-`` lines are skipped."""
    columns: dict[str, Any] = {"token_column": token_column, "tag_column": tag_column}
    parts = {k: read_columns(Path(p), **columns) for k, p in (("train", train), ("dev", dev), ("test", test)) if p}
    return SequenceSplits("conll2003", "tagging", parts["train"], parts.get("dev", []), parts.get("test", []))
