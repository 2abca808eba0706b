"""A text-classification job's runs: the splits tokenised once for the student (and for the teacher when it reads
with another tokenizer), the frozen teacher and its predictions on the fixed splits, Hugging Face students, the
fidelity figures and the job's table."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdlab.core.batch import Batch
from kdlab.core.errors import ConfigError
from kdlab.core.outputs import ModelOutput
from kdlab.data.text import TextData, TextLoader, TextSplits, Tokens, same_tokenizer, tokenize
from kdlab.losses import label_cross_entropy
from kdlab.methods import MethodContext
from kdlab.methods.encoder import TextContext
from kdlab.models import hf
from kdlab.models.encoders import encoder_anatomy
from kdlab.pipeline.config import Config
from kdlab.pipeline.task import Log, Member, Provided
from kdlab.reporting.tables import Column, comparison_table
from kdlab.tasks.text.evaluate import layer_cka, metrics, predictions
from kdlab.tasks.text.models import TextModel, build_student, num_labels_of, student_tokenizer
from kdlab.tasks.text.teacher_source import online, teacher_source
from kdlab.training.engine import BatchSource, Recipe, TeacherSource
from kdlab.training.teachers import Teacher

CKA_EXAMPLES = 2000
SPLITS = ("train", "val", "test")


def text_labels(student: ModelOutput, batch: Batch, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy of class logits ``[B, c]`` with labels ``[B]`` (−1 ignored)."""
    return label_cross_entropy(student.logits, batch.y, None, None, label_smoothing)


def widths(model: nn.Module, layers: Sequence[str]) -> dict[str, int]:
    """The width of each tapped layer's output per position: a projection's outputs, else the hidden size."""
    modules = dict(model.named_modules())
    hidden = int(getattr(model.config, "hidden_size", 0))
    return {name: int(getattr(modules.get(name), "out_features", hidden)) for name in layers}


@dataclass
class Tokenised:
    """One split in the student's tokens and, when the teacher reads with another tokenizer, in the teacher's."""

    data: TextData
    student: Tokens
    teacher: Tokens | None = None


@dataclass
class TextExperiment:
    """What the runs of one text job share: the splits, tokenizers, teacher and the teacher's predictions."""

    config: Config
    columns_: tuple[Column, ...]
    splits: TextSplits
    tokenizer: Any
    parts: dict[str, Tokenised]
    device: torch.device
    teacher_model: TextModel | None = None
    given_student: nn.Module | None = None
    teacher: Teacher | None = None
    teacher_name: str | None = None
    teacher_logits: dict[str, torch.Tensor] = field(default_factory=dict)
    teacher_test: dict[str, float] | None = None

    @classmethod
    def prepare(
        cls,
        config: Config,
        columns: tuple[Column, ...],
        splits: TextSplits,
        device: torch.device,
        provided: Provided | None,
        teacher: TextModel | None,
    ) -> TextExperiment:
        """Read and tokenise the data with the student's (and the teacher's) tokenizer — before any folder."""
        given = provided.student if provided is not None else None
        pair = provided.tokenizer if provided is not None else None
        teacher_tokenizer, own = pair if isinstance(pair, tuple | list) else (pair, pair)
        if teacher is not None and teacher.tokenizer is None:  # a teacher given as an object reads with the given one
            if teacher_tokenizer is None:
                raise ConfigError("A teacher given as a Python object needs its tokenizer: pass tokenizer=... .")
            teacher.tokenizer = teacher_tokenizer
        tokenizer = student_tokenizer(config.student, teacher, own)
        shared = teacher is None or same_tokenizer(teacher.tokenizer, tokenizer)
        max_length = config.data.options.get("max_length")
        parts = {}
        for split in SPLITS:
            data = getattr(splits, split)
            if data is None or len(data) == 0:
                continue
            mine = tokenize(data.texts, tokenizer, max_length=max_length)
            theirs = None if shared or teacher is None else tokenize(data.texts, teacher.tokenizer, max_length)
            parts[split] = Tokenised(data, mine, theirs)
        experiment = cls(config, columns, splits, tokenizer, parts, device, teacher, given)
        if teacher is not None:
            experiment.teacher = Teacher(teacher.model).to(device)
            experiment.teacher_name = teacher.name
        return experiment

    @property
    def num_classes(self) -> int:
        return len(self.splits.label_names)

    @property
    def shares_tokenizer(self) -> bool:
        return all(part.teacher is None for part in self.parts.values())

    def loader(self, split: str, seed: int = 0, shuffle: bool = False) -> TextLoader:
        part = self.parts[split]
        size = self.config.data.batch_size if shuffle else self.config.data.eval_batch_size
        return TextLoader(
            part.student, part.data.labels, size, device=self.device, shuffle=shuffle, seed=seed,
            teacher_tokens=part.teacher,
        )  # fmt: skip

    def build_student(self, member: Member) -> nn.Module:
        teacher = self.teacher_model
        student = build_student(self.config.student, self.num_classes, teacher, self.given_student)
        labels = num_labels_of(student)
        if labels is not None and labels != self.num_classes:
            raise ConfigError(
                f"The student predicts {labels} labels but {self.splits.name} has {self.num_classes} classes "
                f"({', '.join(self.splits.label_names)}); give a student with a head of {self.num_classes}."
            )
        return student

    def load_student(self) -> nn.Module:
        """The configured student as it was saved (``kdlab evaluate``), on the job's device."""
        return build_student(self.config.student, self.num_classes, self.teacher_model, None).to(self.device)

    def method_context(self, member: Member, student: nn.Module, epochs: int) -> MethodContext:
        return MethodContext(
            student,
            self.teacher,
            self.num_classes,
            num_train=len(self.parts["train"].data.texts),
            epochs=epochs,
            label_loss=text_labels,
            extras=TextContext(same_tokenizer=self.shares_tokenizer),
        )

    def check(self, member: Member, student: nn.Module, method: nn.Module) -> None:
        if method.needs_teacher and self.teacher is None:
            raise ConfigError(f"Method {member.method.name!r} needs a teacher; give teacher=... (or use method=ce).")

    def prepare_student(self, member: Member, student: nn.Module) -> None:
        """Hugging Face students start as they were loaded or built (init_layers copies teacher blocks)."""

    def train_batches(self, member: Member) -> BatchSource:
        return self.loader("train", member.seed, shuffle=True)

    def teacher_source(
        self, member: Member, method: nn.Module, recipe: Recipe, log: Log
    ) -> tuple[TeacherSource | None, dict[str, Any] | None]:
        if not method.needs_teacher or self.teacher is None:
            return None, None
        part = self.parts["train"]
        tokens = part.teacher or part.student
        dims = widths(self.teacher.members[0], getattr(method, "teacher_layers", ()))
        if self.teacher_name is None:  # a Python object: no name to file a cache under
            self.teacher.tap(tuple(getattr(method, "teacher_layers", ())))
            return online(self.teacher), {"kind": "online", "reason": "the teacher was given as a Python object"}
        return teacher_source(
            method, self.teacher, self.teacher_name, self.loader("train"), tokens.input_ids, dims, self.config.cache,
            enabled=self.config.teacher_cache, precision=recipe.precision, device=self.device, log=log,
        )  # fmt: skip

    def split_logits(self, split: str) -> torch.Tensor | None:
        """The teacher's logits on a fixed split (computed once)."""
        if self.teacher is None:
            return None
        if split not in self.teacher_logits:
            self.teacher_logits[split] = predictions(None, self.teacher, self.loader(split).epoch(0), self.device)[0][
                "t"
            ]
        return self.teacher_logits[split]

    def evaluate(self, student: nn.Module, split: str) -> dict[str, float]:
        logits, targets = predictions(student, None, self.loader(split).epoch(0), self.device)
        return metrics(logits["s"], targets, self.split_logits(split))

    def teacher_metrics(self) -> dict[str, float]:
        if self.teacher_test is None and self.teacher is not None and "test" in self.parts:
            logits = self.split_logits("test")
            assert logits is not None
            self.teacher_test = metrics(logits, self.parts["test"].data.labels.to(self.device), None)
        return self.teacher_test or {}

    def validate(self, member: Member, student: nn.Module) -> Callable[[], dict[str, float]] | None:
        return (lambda: self.evaluate(student, "val")) if "val" in self.parts else None

    def cka(self, student: nn.Module) -> dict[str, dict[str, float]]:
        """CKA of the last blocks' [CLS] and mean-pooled states on the test split (the shared tokenizer's)."""
        assert self.teacher is not None
        s, t = encoder_anatomy(student).num_layers, encoder_anatomy(self.teacher).num_layers
        pairs = [(s, t, "cls"), (s, t, "mean")]
        split = "test" if "test" in self.parts else "train"
        return layer_cka(student, self.teacher.members[0], pairs, self.loader(split).epoch(0), CKA_EXAMPLES)

    def figures(self, member: Member, student: nn.Module) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.config.student.name,
            "parameters": sum(p.numel() for p in student.parameters()),
        }
        if "test" in self.parts:
            out["test"] = self.evaluate(student, "test")
        out["train"] = self.evaluate(student, "train")
        if self.teacher is None:
            return {"student": out}
        out["cka"] = self.cka(student)
        teacher = {
            "name": self.teacher_name,
            "parameters": sum(p.numel() for p in self.teacher.parameters()),
            "test": self.teacher_metrics(),
        }
        return {"teacher": teacher, "student": out}

    def record(self, member: Member) -> dict[str, Any]:
        truncated = {split: part.student.truncated for split, part in self.parts.items()}
        return {
            "data": self.splits.name,
            "task": "text_classification",
            "labels": list(self.splits.label_names),
            "train_texts": len(self.parts["train"].data.texts),
            "max_length": self.parts["train"].student.max_length,
            "truncated": truncated,
            "tokenizers": "shared" if self.shares_tokenizer else "separate",
        }

    def save_model(self, path: Path, student: nn.Module, metrics: dict[str, Any]) -> None:
        record = {"task": "text_classification", "labels": list(self.splits.label_names),
                  "metrics": metrics.get("test", {})}  # fmt: skip
        hf.save_pretrained(path.parent, student, self.tokenizer, record)

    def table(self, rows: Sequence[tuple[str, Sequence[dict[str, Any]]]]) -> str:
        return comparison_table(self.columns_, rows, self.teacher_metrics() if self.teacher is not None else None)

    def columns(self) -> list[Column]:
        return list(self.columns_)
