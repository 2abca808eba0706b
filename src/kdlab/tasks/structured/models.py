"""Sequence models by name, their model files, and the frozen teacher that reads the student's batches."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdlab.core import files
from kdlab.core.batch import Batch
from kdlab.core.errors import CheckpointError, ConfigError
from kdlab.core.modes import eval_mode
from kdlab.core.outputs import ModelOutput
from kdlab.core.typecheck import check_kwargs
from kdlab.data.sentences.encoding import Task, Vocabulary
from kdlab.data.sentences.labels import LabelTable
from kdlab.data.sentences.loader import SentenceExtras
from kdlab.models.factory import ModelSpec
from kdlab.models.registry import MODELS
from kdlab.models.sequence import kind_of

TASK_OF = {"tagging": "sequence_labelling", "parsing": "dependency_parsing"}  # the task of each kind of labels


def num_labels(spec: ModelSpec, vocab: Vocabulary, task: Task, table: LabelTable | None) -> int:
    if task == "tagging":
        return len(vocab.tags)
    if spec.name == "biaffine":
        return len(vocab.relations)
    assert table is not None
    return len(table)


def build_sequence_model(spec: ModelSpec, vocab: Vocabulary, task: Task, table: LabelTable | None) -> nn.Module:
    """Build zoo sequence model ``spec`` (tagger, biaffine) for this vocabulary and task."""
    fn = MODELS.for_task(spec.name, TASK_OF[task])
    options = check_kwargs(fn, spec.options, f"student {spec.name!r}")
    return fn(len(vocab.words), len(vocab.chars), num_labels(spec, vocab, task, table), **options)


def save_sequence_model(
    path: Path, model: nn.Module, spec: ModelSpec, vocab: Vocabulary, task: Task, table: LabelTable | None,
    metrics: Mapping[str, Any],
) -> None:  # fmt: skip
    """A kdlab model file that also holds the vocabulary (and a labeller's label set)."""
    files.save(
        {
            "format": "kdlab-model",
            "version": 1,
            "model": {"name": spec.name, "options": spec.options},
            "data": None,
            "sequence": {"task": task, "vocabulary": vocab.to_dict(), "labels": table.pairs() if table else None},
            "state_dict": model.state_dict(),
            "metrics": dict(metrics),
        },
        path,
    )


@dataclass
class SequenceModelFile:
    model: nn.Module
    vocab: Vocabulary
    task: Task
    table: LabelTable | None
    spec: ModelSpec


def load_sequence_model(path: Path) -> SequenceModelFile:
    record = files.load(path, what="model file")
    if record.get("format") != "kdlab-model" or not record.get("sequence"):
        raise CheckpointError(
            f"{path} is not a kdlab sequence model file (a tagger or parser trained by kdlab train on a sequence "
            "data set such as turkish_pos, turkish_deps or hironsan_ner)."
        )
    info = record["sequence"]
    vocab = Vocabulary.from_dict(info["vocabulary"])
    table = LabelTable.from_pairs([tuple(p) for p in info["labels"]], len(vocab.relations)) if info["labels"] else None
    spec = ModelSpec(record["model"]["name"], record["model"]["options"])
    model = build_sequence_model(spec, vocab, info["task"], table)
    try:
        model.load_state_dict(record["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"The weights in {path} do not fit {spec.name}: {str(exc).splitlines()[0]}") from None
    return SequenceModelFile(model, vocab, info["task"], table, spec)


def label_order(teacher: tuple[str, ...], student: tuple[str, ...], tag_map: Mapping[str, str], what: str) -> list[int]:
    """For each student label, the teacher's index of it (after renaming teacher labels by ``tag_map``)."""
    renamed = [tag_map.get(t, t) for t in teacher]
    if len(set(renamed)) != len(renamed):
        twice = sorted({t for t in renamed if renamed.count(t) > 1})
        raise ConfigError(f"tag_map maps two teacher {what}s onto {twice[0]!r}; it must rename one-to-one.")
    only_teacher = sorted(set(renamed) - set(student))
    only_student = sorted(set(student) - set(renamed))
    if only_teacher or only_student:
        raise ConfigError(
            f"The teacher's and the student's {what} sets differ: only the teacher has "
            f"{', '.join(only_teacher) or '(none)'}; only the student's data has "
            f"{', '.join(only_student) or '(none)'}. "
            + (
                f"Give a one-to-one renaming of the teacher's {what}s (tag_map={{TEACHER: STUDENT}}, e.g. "
                f"tag_map={{{only_teacher[0]}: {only_student[0]}}}), or distil on data with the teacher's {what} set."
                if only_teacher and only_student
                else f"Distil on data with the teacher's {what} set, or rename with tag_map={{TEACHER: STUDENT}}."
            )
        )
    return [renamed.index(s) for s in student]


class SequenceTeacher:
    """A frozen structured teacher (eval mode, no gradients) that reads the student's batches: word and character
    ids are translated into the teacher's vocabulary, and its labels reordered into the student's. A saved student
    read the same way (``teacher_encoding=False``) ignores the batches' teacher encoding."""

    def __init__(
        self,
        loaded: SequenceModelFile,
        vocab: Vocabulary,
        tag_map: Mapping[str, str],
        device: torch.device,
        *,
        teacher_encoding: bool = True,
    ) -> None:
        self.teacher_encoding = teacher_encoding
        self.model = loaded.model.to(device).eval().requires_grad_(False)
        self.kind, self.task = kind_of(self.model, loaded.task), loaded.task
        self.vocab = loaded.vocab
        words, chars = vocab.remap(loaded.vocab)
        self.words, self.chars, self.max_chars = words.to(device), chars.to(device), loaded.vocab.max_chars
        if self.kind == "parser":
            order = label_order(loaded.vocab.relations, vocab.relations, tag_map, "relation")
        else:
            order = label_order(loaded.vocab.tags, vocab.tags, tag_map, "tag")
        self.order = torch.tensor(order, dtype=torch.long, device=device)

    def inputs(self, batch: Batch) -> torch.Tensor:
        """The batch in the teacher's vocabulary: its own encoding of the sentences when the batch carries it (words
        the student's vocabulary lacks stay known to the teacher), else the student's ids mapped."""
        extras = batch.extras
        if self.teacher_encoding and isinstance(extras, SentenceExtras) and extras.teacher_x is not None:
            return extras.teacher_x
        x = batch.x
        chars = self.chars[x[..., 1 : 1 + self.max_chars]]
        if chars.shape[-1] < self.max_chars:
            chars = torch.nn.functional.pad(chars, (0, self.max_chars - chars.shape[-1]))
        return torch.cat([self.words[x[..., :1]], chars], -1)

    def __call__(self, batch: Batch) -> ModelOutput:
        with torch.no_grad(), eval_mode(self.model):
            out = self.model(self.inputs(batch))
        o = self.order
        if self.kind == "parser":
            return ModelOutput(logits=out.logits, structure={"relations": out.structure["relations"][..., o]})
        structure = {}
        if out.structure:
            s = out.structure
            structure = {"transitions": s["transitions"][o][:, o], "start": s["start"][o], "end": s["end"][o]}
        return ModelOutput(logits=out.logits[..., o], structure=structure)
