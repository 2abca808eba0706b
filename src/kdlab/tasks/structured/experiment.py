"""A sequence-labelling or parsing job's runs: the splits encoded in one vocabulary, taggers and parsers built for
it, the frozen structured teacher, the structured metrics and the job's table."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdlab.core.errors import ConfigError
from kdlab.core.modes import eval_mode
from kdlab.core.typecheck import check_kwargs
from kdlab.data import DATASETS
from kdlab.data.sentences.corpora import SequenceSplits
from kdlab.data.sentences.encoding import Encoded, Vocabulary, encode, encode_inputs
from kdlab.data.sentences.labels import LabelTable
from kdlab.data.sentences.loader import SentenceLoader
from kdlab.methods import MethodContext
from kdlab.methods.structured import SequenceContext
from kdlab.models.files import resolve_model_path
from kdlab.models.sequence import kind_of
from kdlab.pipeline.config import Config, DataConfig
from kdlab.pipeline.task import Log, Member
from kdlab.reporting.tables import Column, comparison_table
from kdlab.tasks.structured.evaluate import fidelity, predict, task_metrics
from kdlab.tasks.structured.labels import sentence_label_loss
from kdlab.tasks.structured.models import (
    SequenceTeacher,
    build_sequence_model,
    load_sequence_model,
    save_sequence_model,
)
from kdlab.training.engine import BatchSource, Recipe, TeacherSource

ENCODING = {"min_count": 2, "max_chars": 16}  # data options of the vocabulary, not of the data set


def load_splits(config: DataConfig) -> tuple[SequenceSplits, list[bool]]:
    """The data set's splits with ``train_size``/``test_size`` applied, and which training sentences keep their
    labels: ``labelled = N`` keeps N chosen at random (``split_seed``), the rest become unlabelled."""
    options = {k: v for k, v in config.options.items() if k not in ENCODING}
    builder = DATASETS.get(config.name)
    splits = builder(**check_kwargs(builder, options, f"data set {config.name!r}"))
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


@dataclass
class SequenceExperiment:
    """What the runs of one sequence job share: data, vocabulary, label set and teacher."""

    config: Config
    column_specs: tuple[Column, ...]
    splits: SequenceSplits
    vocab: Vocabulary
    train: Encoded
    val: Encoded | None
    test: Encoded | None
    label_table: LabelTable | None
    device: torch.device
    teacher: SequenceTeacher | None = None
    teacher_name: str | None = None
    teacher_test: dict[str, float] | None = None

    @classmethod
    def prepare(cls, config: Config, columns: tuple[Column, ...], device: torch.device, command: str) -> Any:
        """Read the data, build the vocabulary and load the teacher — before any folder is made."""
        splits, labelled = load_splits(config.data)
        options = {**ENCODING, **{k: v for k, v in config.data.options.items() if k in ENCODING}}
        vocab = Vocabulary.build(
            splits.train,
            splits.task,
            min_count=int(options["min_count"]),
            max_chars=int(options["max_chars"]),
            inventory=splits.inventory,
        )
        table = LabelTable.build(splits.inventory, vocab.relations) if splits.task == "parsing" else None
        experiment = cls(
            config, columns, splits, vocab, encode(splits.train, vocab, splits.task, labelled),
            encode(splits.val, vocab, splits.task) if splits.val else None,
            encode(splits.test, vocab, splits.task) if splits.test else None, table, device,
        )  # fmt: skip
        if command != "train":
            experiment.load_teacher(str(config.teacher[0]))
        return experiment

    def load_teacher(self, spec: str) -> None:
        loaded = load_sequence_model(resolve_model_path(spec)[0])
        if loaded.task != self.splits.task:
            raise ConfigError(
                f"The teacher was trained for {loaded.task} but {self.config.data.name} is {self.splits.task} data."
            )
        self.teacher = SequenceTeacher(loaded, self.vocab, self.config.tag_map, self.device)
        self.teacher_name = spec
        for data in (self.train, self.val, self.test):  # the teacher reads every sentence in its own vocabulary
            if data is not None:
                data.teacher_x = encode_inputs(data.sentences, loaded.vocab)

    def loader(self, data: Encoded, seed: int = 0, shuffle: bool = False) -> SentenceLoader:
        size = self.config.data.batch_size if shuffle else self.config.data.eval_batch_size
        return SentenceLoader(data, size, device=self.device, shuffle=shuffle, seed=seed)

    def build_student(self, member: Member) -> nn.Module:
        return build_sequence_model(self.config.student, self.vocab, self.splits.task, self.label_table)

    def method_context(self, member: Member, student: nn.Module, epochs: int) -> MethodContext:
        kind = kind_of(student, self.splits.task)
        teacher_kind = self.teacher.kind if self.teacher is not None else "none"
        table = None if self.label_table is None else self.label_table.to(self.device)
        return MethodContext(
            student,
            self.teacher,
            len(self.vocab.labels),
            num_train=len(self.train),
            epochs=epochs,
            label_loss=sentence_label_loss(kind, table),
            label_smoothing=False,
            extras=SequenceContext(self.splits.task, kind, teacher_kind, table),
        )

    def check(self, member: Member, student: nn.Module, method: nn.Module) -> None:
        if method.needs_teacher and self.teacher is None:
            raise ConfigError(f"Method {member.method.name!r} needs a teacher; give teacher=RUN (or use method=ce).")

    def prepare_student(self, member: Member, student: nn.Module) -> None:
        """Taggers and parsers start from their own initialisation."""

    def train_batches(self, member: Member) -> BatchSource:
        return self.loader(self.train, member.seed, shuffle=True)

    def teacher_source(
        self, member: Member, method: nn.Module, recipe: Recipe, log: Log
    ) -> tuple[TeacherSource | None, dict[str, Any] | None]:
        return (self.teacher if method.needs_teacher else None), None

    def evaluate(self, model: nn.Module, data: Encoded) -> dict[str, float]:
        kind = kind_of(model, self.splits.task)
        with eval_mode(model):
            return self._scores((lambda b: model(b.x), kind), data)

    def score(self, frozen: SequenceTeacher | None, data: Encoded) -> dict[str, float]:
        """A saved model's figures on ``data`` (against the teacher), or the teacher's own (``frozen`` None)."""
        assert self.teacher is not None
        if frozen is None:
            teacher = {"t": (self.teacher, self.teacher.kind)}
            decoded, gold = predict(teacher, self.loader(data).epoch(0), self.label_table)
            return task_metrics(decoded["t"], gold, self.vocab.labels)
        return self._scores((frozen, frozen.kind), data)

    def _scores(self, predictor: tuple[Callable[[Any], Any], str], data: Encoded) -> dict[str, float]:
        predictors = {"s": predictor}
        if self.teacher is not None:
            predictors["t"] = (self.teacher, self.teacher.kind)
        decoded, gold = predict(predictors, self.loader(data).epoch(0), self.label_table)
        out = task_metrics(decoded["s"], gold, self.vocab.labels)
        if "t" in decoded:
            out.update(fidelity(decoded["s"], decoded["t"]))
        return out

    def teacher_metrics(self) -> dict[str, float]:
        if self.teacher_test is None and self.teacher is not None and self.test is not None:
            self.teacher_test = self.score(None, self.test)
        return self.teacher_test or {}

    def validate(self, member: Member, student: nn.Module) -> Callable[[], dict[str, float]] | None:
        val = self.val
        return (lambda: self.evaluate(student, val)) if val is not None else None

    def figures(self, member: Member, student: nn.Module) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.config.student.name,
            "kind": kind_of(student, self.splits.task),
            "parameters": sum(p.numel() for p in student.parameters()),
        }
        if self.test is not None:
            out["test"] = self.evaluate(student, self.test)
        out["train"] = self.evaluate(student, self.train)
        if self.teacher is None:
            return {"student": out}
        teacher = {"name": self.teacher_name, "kind": self.teacher.kind, "test": self.teacher_metrics()}
        return {"teacher": teacher, "student": out}

    def record(self, member: Member) -> dict[str, Any]:
        labelled = int(sum(self.train.y.flatten(1)[:, 0] >= 0))
        return {"data": self.config.data.name, "task": self.splits.task, "labelled": labelled,
                "train_sentences": len(self.train)}  # fmt: skip

    def save_model(self, path: Path, student: nn.Module, metrics: dict[str, Any]) -> None:
        save_sequence_model(path, student, self.config.student, self.vocab, self.splits.task, self.label_table,
                            metrics.get("test", {}))  # fmt: skip

    def table(self, rows: Sequence[tuple[str, Sequence[dict[str, Any]]]]) -> str:
        return comparison_table(self.column_specs, rows, self.teacher_metrics() if self.teacher is not None else None)

    def columns(self) -> list[Column]:
        return list(self.column_specs)
