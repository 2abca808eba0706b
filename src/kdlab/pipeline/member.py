"""One run of a job end to end, for any task: build the student and the method, train with the engine, ask the task
for its figures, write the run folder."""

from __future__ import annotations

import platform
import re
import sys
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from kdlab.core.errors import ConfigError
from kdlab.core.version import __version__
from kdlab.methods import build_method, params_mapping
from kdlab.pipeline.task import Experiment, Member
from kdlab.runs.trackers import Trackers
from kdlab.training import distributed
from kdlab.training.engine import Engine, Recipe


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu" or re.fullmatch(r"cuda(:\d+)?", name):
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(
                f"device={name} was requested but no CUDA device is available here; use device=cpu or auto."
            )
        device = torch.device(name)
        if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
            raise ConfigError(f"device={name}: this machine has {torch.cuda.device_count()} CUDA device(s).")
        return device
    raise ConfigError(f"Unknown device {name!r}; valid: auto, cpu, cuda, cuda:N.")


def versions() -> dict[str, str]:
    return {
        "kdlab": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


@dataclass
class Built:
    """A member's fresh student and method."""

    student: nn.Module
    method: nn.Module


def build(experiment: Experiment, member: Member, recipe: Recipe, *, prepare: bool = True) -> Built:
    """The member's student (seeded; prepared for training unless ``prepare`` is false, as when a job is checked
    before it starts) and method, every task check passed."""
    torch.manual_seed(member.seed)
    student = experiment.build_student(member).to(experiment.device)
    if prepare:
        experiment.prepare_student(member, student)
    context = experiment.method_context(member, student, recipe.epochs)
    method = build_method(member.method.name, member.params, context).to(experiment.device)
    experiment.check(member, student, method)
    return Built(student, method)


def run_member(
    member: Member,
    experiment: Experiment,
    recipe: Recipe,
    *,
    resume: bool,
    progress: bool,
    extra: dict[str, Any],
    trackers: Trackers,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train one student (or, without a teacher, one model) and write its folder; returns it and its summary."""
    started = time.perf_counter()
    built = build(experiment, member, recipe)
    student, method = built.student, built.method
    log = (lambda message: print(message, file=sys.stderr)) if progress else (lambda message: None)
    teacher, source = experiment.teacher_source(member, method, recipe, log)
    engine = Engine(
        student=student,
        method=method,
        train=experiment.train_batches(member),
        recipe=replace(recipe, seed=member.seed),
        state_path=member.folder.state_path,
        teacher=teacher,
        evaluate=experiment.validate(member, student),
        on_epoch=trackers.on_epoch(member.folder.write_metrics),
        progress=progress,
        label=member.label,
    )
    fit_started = time.perf_counter()
    history = engine.fit(resume=resume)
    if distributed.is_sharded(student):  # FSDP: the trained weights gathered into a whole student on every process
        state = distributed.gathered_state_dict(student)
        torch.manual_seed(member.seed)
        student = experiment.build_student(member).to(experiment.device)
        student.load_state_dict(state)
    fit_ended = time.perf_counter()
    figures = experiment.figures(member, student)
    training_time = history[-1]["time_s"] if history else 0.0
    summary = {
        **figures,
        "method": {"name": member.method.name, **getattr(method, "record", {}), **params_mapping(member.params)},
        "role": member.role,
        "seed": member.seed,
        "epochs": recipe.epochs,
        **experiment.record(member),
        "device": str(experiment.device),
        # training time accumulates over resumes; add this process's set-up and final evaluation
        "wall_time_s": round(training_time + (fit_started - started) + (time.perf_counter() - fit_ended), 2),
        "train_time_s": training_time,
        **({"teacher_source": source} if source else {}),
        "versions": versions(),
        **extra,
    }
    if distributed.is_main():  # every rank holds the same figures; one writes them
        experiment.save_model(member.folder.model_path, student, summary["student"])
        member.folder.write_summary(summary)
        trackers.finish(summary)
    return student, summary
