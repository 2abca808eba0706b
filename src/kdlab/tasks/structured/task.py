"""The two structured-prediction tasks: sequence labelling (tags: UPOS, NER spans) and dependency parsing (trees;
a biaffine parser, or a tagger over (head offset, relation) labels); both on taggers and parsers of one
vocabulary, with structural KD and its baselines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from kdlab.core.errors import ConfigError
from kdlab.models.files import resolve_model_path
from kdlab.pipeline.config import Config
from kdlab.pipeline.member import resolve_device
from kdlab.pipeline.task import TASKS, Command, Provided
from kdlab.reporting.tables import Column
from kdlab.tasks.structured.experiment import SequenceExperiment
from kdlab.tasks.structured.models import SequenceTeacher, load_sequence_model
from kdlab.training import distributed

TAGGING_COLUMNS = (
    Column("accuracy %", "test", "accuracy"),
    Column("span F1 %", "test", "f1"),
    Column("agreement %", "test", "agreement"),
    Column("sentence agr. %", "test", "sentence_agreement"),
    Column("token KL", "test", "kl", 1.0, 4),
)
PARSING_COLUMNS = (
    Column("UAS %", "test", "uas"),
    Column("LAS %", "test", "las"),
    Column("head agr. %", "test", "agreement"),
    Column("labelled agr. %", "test", "labelled_agreement"),
    Column("sentence agr. %", "test", "sentence_agreement"),
)


@dataclass(frozen=True)
class StructuredTask:
    """A task of sentence data: ``name``, a summary, and the columns of its table."""

    name: str
    summary: str
    columns: tuple[Column, ...]

    def check(self, config: Config, command: Command) -> None:
        if distributed.launched():
            raise ConfigError(
                f"{config.data.name} is a sentence data set (taggers and parsers); those train in one process, but "
                f"torchrun started {distributed.world_size()}. Run it without torchrun (kdlab {command} ...); "
                "torchrun trains on the image data sets."
            )
        unavailable = (("control_teacher", config.control_teacher), ("student_init", config.student_init is not None))
        for key, bad in unavailable:
            if bad:
                raise ConfigError(f"{key} is not available for sentence data sets ({config.data.name}).")
        if command != "train" and len(config.teacher) != 1:
            raise ConfigError(
                f"Sequence distillation takes one teacher (a run folder or model file); got {config.teacher}."
            )

    def prepare(
        self, config: Config, command: Command, device: torch.device, provided: Provided | None
    ) -> SequenceExperiment:
        if provided is not None:
            raise ConfigError(f"The Python API takes image data and modules; {self.name} runs from a configuration.")
        return SequenceExperiment.prepare(config, self.columns, device, command)

    def evaluate(
        self, student: str, teachers: Sequence[str], config: Config, split: str, cka: Sequence[tuple[str, str]]
    ) -> dict[str, dict[str, Any]]:
        if cka:
            raise ConfigError("--cka compares layers of image models; taggers and parsers are evaluated without it.")
        if len(teachers) != 1:
            raise ConfigError(f"A tagger or parser is evaluated against one teacher; got {len(teachers)}.")
        experiment = SequenceExperiment.prepare(
            config, self.columns, resolve_device(config.device), "train"  # no teacher yet: load it below
        )
        experiment.load_teacher(teachers[0])
        loaded = load_sequence_model(resolve_model_path(student, "student")[0])
        frozen = SequenceTeacher(loaded, experiment.vocab, config.tag_map, experiment.device, teacher_encoding=False)
        data = {"train": experiment.train, "val": experiment.val, "test": experiment.test}[split]
        if data is None:
            raise ConfigError(f"{config.data.name} has no {split} split.")
        return {"teacher": experiment.score(None, data), "student": experiment.score(frozen, data)}


TASKS.register("sequence_labelling")(
    StructuredTask("sequence_labelling", "sentences → a tag per word (CRF or MaxEnt taggers)", TAGGING_COLUMNS)
)
TASKS.register("dependency_parsing")(
    StructuredTask("dependency_parsing", "sentences → dependency trees (biaffine parser or labeller)", PARSING_COLUMNS)
)
