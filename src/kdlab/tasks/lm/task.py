"""The causal language-modelling task: token sequences → next-token distributions of Hugging Face causal LMs; each
model's cross-entropy, perplexity, accuracy and ECE; the student's next-token agreement, KL, TV and top-5 overlap
with its teacher and the teacher's log-probability of what the student writes; ``ce`` and ``lm_kd``."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdlab.core.errors import ConfigError
from kdlab.core.typecheck import build_dataclass, check_kwargs
from kdlab.data import DATASETS
from kdlab.data.lm import Columns, LMData, LMSplits, read_lm
from kdlab.models.factory import OBJECT, ModelSpec
from kdlab.pipeline.config import Config, DataConfig, resolve
from kdlab.pipeline.member import resolve_device
from kdlab.pipeline.task import TASKS, Command, Provided
from kdlab.reporting.tables import Column
from kdlab.tasks.hf_rules import check_one_process_job
from kdlab.tasks.lm.experiment import LMExperiment, LMOptions
from kdlab.tasks.lm.models import TASK, LMModel, check_student_spec, load_teacher, location, quiet
from kdlab.training import distributed

COLUMNS = (
    Column("CE", "test", "nll", 1.0, 3),
    Column("ppl", "test", "perplexity", 1.0, 2),
    Column("next-token acc. %", "test", "accuracy"),
    Column("agreement %", "test", "agreement"),
    Column("KL", "test", "kl", 1.0, 4),
    Column("top-5 overlap %", "test", "top5_overlap"),
    Column("ECE %", "test", "ece"),
    Column("teacher logp of samples", "test", "sample_teacher_logp", 1.0, 3),
    Column("train agr. %", "train", "agreement"),
)
OPTIONS = tuple(f.name for f in LMOptions.__dataclass_fields__.values())


def options_of(data: DataConfig) -> LMOptions:
    """The task's data options (``max_length``, ``packing``, ``prompt_length``, ``micro_batch_size``), typed."""
    return build_dataclass(LMOptions, {k: v for k, v in data.options.items() if k in OPTIONS}, "data")


def read_splits(config: DataConfig, provided: Provided | None) -> LMSplits:
    """The API's data, or the configured data set read with its own options."""
    if provided is not None and provided.train is not None:
        empty = LMData.empty(provided.train.kind)
        return LMSplits(provided.train, provided.val or empty, provided.test or empty, "object:data")
    options = {k: v for k, v in config.options.items() if k not in OPTIONS}
    builder = DATASETS.get(config.name)
    return builder(**check_kwargs(builder, options, f"data set {config.name!r}"))


class CausalLM:
    """Language-model data (``stdlib``, ``lm_files``, the API's texts) and Hugging Face causal LMs."""

    name = TASK
    summary = (
        "token sequences → next-token distributions of Hugging Face causal LMs (hf:PATH, {name: hf, config: gpt2 | "
        "teacher, ...}); CE, perplexity; next-token agreement, KL, top-5 overlap, ECE; teacher logp of samples"
    )

    shards_models = True

    def check(self, config: Config, command: Command) -> None:
        check_one_process_job(config, command, "language-model data", torchrun=True)
        check_student_spec(config.student)
        options_of(config.data)
        world = distributed.world_size()
        if world > 1 and config.data.batch_size % world:
            raise ConfigError(
                f"data.batch_size={config.data.batch_size} is the global batch of the {world} processes; it must be a "
                f"multiple of {world}, so that every process runs as many forward and backward passes as the others."
            )

    def prepare(
        self, config: Config, command: Command, device: torch.device, provided: Provided | None
    ) -> LMExperiment:
        splits = read_splits(config.data, provided)
        teacher = None
        if provided is not None and provided.teachers:
            if len(provided.teachers) != 1:
                raise ConfigError(f"Language-model distillation takes one teacher model; got {len(provided.teachers)}.")
            teacher = LMModel(quiet(provided.teachers[0]), None, "object:teacher")
        elif command != "train":
            if not config.teacher:
                raise ConfigError("kdlab distill needs a teacher: teacher=hf:PATH or a language-model run folder.")
            teacher = load_teacher(str(config.teacher[0]))
        if teacher is not None and config.teacher_dtype is not None:  # a narrower teacher: half the memory in bf16
            teacher.model.to(getattr(torch, config.teacher_dtype))
        return LMExperiment.prepare(config, COLUMNS, splits, options_of(config.data), device, provided, teacher)

    def evaluate(
        self, student: str, teachers: Sequence[str], config: Config, split: str, cka: Sequence[tuple[str, str]]
    ) -> dict[str, dict[str, Any]]:
        if len(teachers) != 1:
            raise ConfigError(f"A language-model student is evaluated against one teacher; got {len(teachers)}.")
        if cka:
            raise ConfigError("--cka compares encoder or image layers; language-model runs report no CKA.")
        config.student = ModelSpec(location(student, "student"))  # read with the saved student's own tokenizer
        experiment = LMExperiment.prepare(config, COLUMNS, read_splits(config.data, None), options_of(config.data),
                                          resolve_device(config.device), None, load_teacher(teachers[0]))  # fmt: skip
        if split not in experiment.parts:
            raise ConfigError(f"The data have no {split} split; choose one of {', '.join(experiment.parts)}.")
        student_model = experiment.load_student()
        both = experiment.split_figures(student_model, split)
        return {"teacher": both.get("teacher", {}), "student": both["student"]}


def evaluate_models(
    teacher: nn.Module,
    student: nn.Module,
    data: Any,
    *,
    tokenizer: Any,
    split: str,
    device: torch.device,
    batch_size: int,
    text: str = "text",
) -> dict[str, dict[str, Any]]:
    """``kdlab.evaluate`` for causal LMs: on a registered data set's ``split``, or on the given data."""
    named = isinstance(data, str) and not Path(data).exists()
    raw: dict[str, Any] = {"eval_batch_size": batch_size} | ({"name": data} if named else {})
    config = resolve({"data": raw, "student": {"name": f"{OBJECT}student"}})
    provided = Provided(TASK, student=student, teachers=[teacher], tokenizer=tokenizer)
    if not named:
        provided.train, split = read_lm(data, Columns(text=text)), "train"
    model = LMModel(quiet(teacher), tokenizer, "object:teacher")
    splits = read_splits(config.data, provided)
    experiment = LMExperiment.prepare(config, COLUMNS, splits, options_of(config.data), device, provided, model)
    if split not in experiment.parts:
        raise ConfigError(f"The data have no {split} split; choose one of {', '.join(experiment.parts)}.")
    both = experiment.split_figures(quiet(copy.deepcopy(student)).to(device), split)
    return {"teacher": both.get("teacher", {}), "student": both["student"]}


TASKS.register(TASK)(CausalLM())
