"""Sequence data sets: the Turkish treebank (UPOS tagging, dependency parsing), Japanese NER (hironsancorpus),
and the user's own CoNLL-U or CoNLL-2003 column files."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from kdlab.core.errors import ConfigError
from kdlab.core.registry import Registry
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
from kdlab.pipeline.config import DataConfig

SEQUENCE_DATASETS: Registry[Callable[[dict[str, Any]], SequenceSplits]] = Registry("sequence data set")


@dataclass
class SequenceSplits:
    """Sentences of each split (``val`` may be empty) and the task they serve."""

    name: str
    task: Task
    train: list[Sentence]
    val: list[Sentence] = field(default_factory=list)
    test: list[Sentence] = field(default_factory=list)
    inventory: list[Sentence] = field(default_factory=list)  # the whole training split: its tags and relations


def _turkish(task: Task, name: str) -> SequenceSplits:
    sentences = [s for path in turkish_treebank_files() for s in read_conllu(path)]
    return SequenceSplits(name, task, *(split_by_index(sentences, part) for part in ("train", "dev", "test")))


@SEQUENCE_DATASETS.register("turkish_pos")
def turkish_pos(options: dict[str, Any]) -> SequenceSplits:
    """Turkish treebank (turkish-treebanks, web + wiki), UPOS tags; sentence i % 10: < 8 train, 8 dev, 9 test."""
    return _turkish("tagging", "turkish_pos")


@SEQUENCE_DATASETS.register("turkish_deps")
def turkish_deps(options: dict[str, Any]) -> SequenceSplits:
    """Turkish treebank, dependency trees (heads and relations); the same splits as turkish_pos."""
    return _turkish("parsing", "turkish_deps")


@SEQUENCE_DATASETS.register("hironsan_ner")
def hironsan_ner(options: dict[str, Any]) -> SequenceSplits:
    """Japanese NER (hironsancorpus, IOB2, 8 entity types): the package's own split, 450 train / 50 test."""
    sentences = read_columns(hironsan_file(), separator="\t")
    return SequenceSplits("hironsan_ner", "tagging", hironsan_split(sentences, "train"), [],
                          hironsan_split(sentences, "test"))  # fmt: skip


def _files(options: dict[str, Any], name: str) -> dict[str, Path]:
    files = {k: options.get(k) for k in ("train", "dev", "test")}
    if not files["train"]:
        raise ConfigError(
            f"Data set {name!r} reads your files: give data.train=PATH (and optionally data.dev=PATH, data.test=PATH)."
        )
    return {k: Path(v) for k, v in files.items() if v}


@SEQUENCE_DATASETS.register("conllu")
def conllu(options: dict[str, Any]) -> SequenceSplits:
    """Your CoNLL-U files (``data.train``, ``data.dev``, ``data.test``); ``data.task``: tagging (UPOS) or parsing."""
    task = options.get("task", "tagging")
    if task not in ("tagging", "parsing"):
        raise ConfigError(f"data.task must be tagging or parsing; got {task!r}.")
    parts = {k: read_conllu(p) for k, p in _files(options, "conllu").items()}
    return SequenceSplits("conllu", task, parts["train"], parts.get("dev", []), parts.get("test", []))


@SEQUENCE_DATASETS.register("conll2003")
def conll2003(options: dict[str, Any]) -> SequenceSplits:
    """Your CoNLL-2003-style column files (token in ``data.token_column``, default 0; tag in ``data.tag_column``,
    default the last), ``data.train``/``dev``/``test``; ``-DOCSTART-`` lines are skipped."""
    columns = {"token_column": int(options.get("token_column", 0)), "tag_column": int(options.get("tag_column", -1))}
    parts = {k: read_columns(p, **columns) for k, p in _files(options, "conll2003").items()}
    return SequenceSplits("conll2003", "tagging", parts["train"], parts.get("dev", []), parts.get("test", []))


_OPTIONS = {"train", "dev", "test", "task", "token_column", "tag_column", "min_count", "max_chars"}


def load_splits(config: DataConfig) -> tuple[SequenceSplits, list[bool]]:
    """The data set's splits with ``train_size``/``test_size`` applied, and which training sentences keep their
    labels: ``labelled = N`` keeps N chosen at random (``split_seed``), the rest become unlabelled."""
    unknown = sorted(set(config.options) - _OPTIONS)
    if unknown:
        raise ConfigError(
            f"Unknown option data.{unknown[0]} for the sequence data set {config.name!r}; valid: "
            f"{', '.join(sorted(_OPTIONS))} (plus labelled, train_size, test_size, batch_size, split_seed)."
        )
    splits = SEQUENCE_DATASETS.get(config.name)(config.options)
    splits.inventory = list(splits.train)  # the label set does not shrink with train_size
    g = torch.Generator().manual_seed(config.split_seed)
    if config.train_size is not None:
        keep = torch.randperm(len(splits.train), generator=g)[: config.train_size].sort().values
        splits.train = [splits.train[i] for i in keep.tolist()]
    if config.test_size is not None:
        splits.test = splits.test[: config.test_size]
    labelled = [True] * len(splits.train)
    if config.labelled is not None:
        if not 0 <= config.labelled <= len(splits.train):
            raise ConfigError(
                f"data.labelled={config.labelled} but {config.name} has {len(splits.train)} training sentences."
            )
        chosen = set(torch.randperm(len(splits.train), generator=g)[: config.labelled].tolist())
        labelled = [i in chosen for i in range(len(splits.train))]
    return splits, labelled


def is_sequence_data(name: str) -> bool:
    return name in SEQUENCE_DATASETS
