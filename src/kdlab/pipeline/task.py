"""The task interface: what a task (image classification, sequence labelling, dependency parsing, ...) plugs into
the one pipeline, and the registry of tasks. Every task reads its models' outputs through the one adapter,
:func:`kdlab.core.outputs.as_model_output`.

The pipeline plans and runs every job the same way — check, lay out the folders, prepare the data and teachers,
build and check every run's student and method, claim the folders, train with the one engine, evaluate, write —
and asks the job's task, through these two protocols, for everything that differs between tasks. A new task is one
module that implements them and registers itself in :data:`TASKS`; see ``docs/architecture.md``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from torch import nn

from kdlab.core.registry import Registry
from kdlab.data import DATASETS
from kdlab.methods import MethodContext
from kdlab.pipeline.config import Config, MethodConfig
from kdlab.reporting.tables import Column
from kdlab.runs.folder import RunFolder
from kdlab.training.engine import BatchSource, Recipe, TeacherSource

Command = Literal["train", "distill", "compare"]
Log = Callable[[str], None]


@dataclass
class Member:
    """One run to do: a seed, a method (as configured, and as its typed hyper-parameters) and where it goes."""

    folder: RunFolder
    seed: int
    method: MethodConfig
    params: Any
    role: str = "main"
    label: str = "train"


@dataclass
class Provided:
    """What the Python API was given as objects instead of names: the student, the teacher models and the data
    (``(x, y)`` tensors, a ``Dataset`` or a ``DataLoader``; for text, read splits), and for text the tokenizer (one
    for both models, or a ``(teacher, student)`` pair); None where the configuration names it instead."""

    task: str
    student: nn.Module | None = None
    teachers: list[nn.Module] | None = None
    train: Any = None
    test: Any = None
    val: Any = None
    num_classes: int | None = None
    tokenizer: Any = None


class Experiment(Protocol):
    """A task's data and teachers for one job, prepared before any folder is made; the pipeline asks it for
    everything task-specific about each run (``member``)."""

    device: torch.device
    teacher_name: str | None

    def build_student(self, member: Member) -> nn.Module:
        """A fresh student (the pipeline seeds the global RNG first), checked against the data."""
        ...

    def method_context(self, member: Member, student: nn.Module, epochs: int) -> MethodContext: ...

    def check(self, member: Member, student: nn.Module, method: nn.Module) -> None:
        """Task checks of a built student and method (a ConfigError before anything is written)."""
        ...

    def prepare_student(self, member: Member, student: nn.Module) -> None:
        """Anything to do to a fresh student before training (e.g. start it between a random init and the
        teacher)."""
        ...

    def train_batches(self, member: Member) -> BatchSource: ...

    def teacher_source(
        self, member: Member, method: nn.Module, recipe: Recipe, log: Log
    ) -> tuple[TeacherSource | None, dict[str, Any] | None]:
        """Where the run's teacher outputs come from (online, a cache, none) and how the summary describes it."""
        ...

    def validate(self, member: Member, student: nn.Module) -> Callable[[], dict[str, float]] | None:
        """The per-epoch validation of ``student`` (None without a validation split)."""
        ...

    def figures(self, member: Member, student: nn.Module) -> dict[str, Any]:
        """The summary's sections after training: ``{"teacher": {...}, "student": {...}}`` (teacher when any)."""
        ...

    def record(self, member: Member) -> dict[str, Any]:
        """What the task adds at the top level of a run's summary (data set, task specifics)."""
        ...

    def save_model(self, path: Path, student: nn.Module, metrics: dict[str, Any]) -> None: ...

    def table(self, rows: Sequence[tuple[str, Sequence[dict[str, Any]]]]) -> str:
        """The job's final table: the teacher and one row per labelled group of runs."""
        ...

    def columns(self) -> list[Column]:
        """The columns ``kdlab compare`` shows for this task (test metrics, mean ± std over seeds)."""
        ...


class Task(Protocol):
    """A kind of problem kdlab distils: how to read its data and models, which methods apply, what it measures.

    A task may set ``shards_models = True`` when its runs can shard the student with FSDP (``fsdp``) and load the
    teacher narrowed (``teacher_dtype``): its evaluation runs the same forward passes on every process."""

    name: str
    summary: str

    def check(self, config: Config, command: Command) -> None:
        """Task rules on the configuration (before any data is read)."""
        ...

    def prepare(self, config: Config, command: Command, device: torch.device, provided: Provided | None) -> Experiment:
        """Read the splits and load the teacher(s) — before any folder is made."""
        ...

    def evaluate(
        self, student: str, teachers: Sequence[str], config: Config, split: str, cka: Sequence[tuple[str, str]]
    ) -> dict[str, dict[str, Any]]:
        """``kdlab evaluate``: a saved student against saved teacher(s) on a split of ``config.data``."""
        ...


TASKS: Registry[Task] = Registry("task")
_PLUGINS = "kdlab.tasks"  # the package whose modules register the shipped tasks


def tasks() -> Registry[Task]:
    """The task registry, with the shipped tasks registered (the one import from this layer up to ``kdlab.tasks``:
    task modules build on the pipeline, so the pipeline finds them by name, at run time)."""
    importlib.import_module(_PLUGINS)
    return TASKS


def task_of(config: Config, provided: Provided | None = None) -> Task:
    """The task of a job: the one its objects belong to, or the one its data set serves."""
    registry = tasks()
    if provided is not None:
        return registry.get(provided.task)
    return registry.get(DATASETS.entry(config.data.name).task_for(config.data.options))
