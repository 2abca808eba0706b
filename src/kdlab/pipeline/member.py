"""One training run end to end: build, train with the engine, evaluate, write the run folder."""

from __future__ import annotations

import platform
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from kdlab import __version__
from kdlab.cache.select import teacher_source as select_teacher_source
from kdlab.cache.settings import CacheConfig
from kdlab.core.errors import ConfigError
from kdlab.methods import MethodContext, build_method, params_mapping, uses_source_temperature
from kdlab.models.depth import DepthSwitch
from kdlab.models.factory import ModelSpec, save_model_file
from kdlab.pipeline.config import MethodConfig
from kdlab.runs.folder import RunFolder
from kdlab.tasks.image.depths import depth_figures
from kdlab.tasks.image.sources import Sources, TeacherPredictions
from kdlab.training import distributed
from kdlab.training.engine import Engine, Recipe
from kdlab.training.interpolation import interpolate_from_teacher
from kdlab.training.predict import eval_mode, model_predictor, predict_all, predict_source, split_metrics
from kdlab.training.teachers import Teacher


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
class Member:
    """One run to do: a seed, a method and where it goes."""

    folder: RunFolder
    seed: int
    method: MethodConfig
    role: str = "main"
    label: str = "train"


@dataclass
class Shared:
    """What the runs of one experiment share: data, teacher and the teacher's predictions."""

    sources: Sources
    device: torch.device
    teacher: Teacher | None = None
    teacher_name: str | None = None
    predictions: TeacherPredictions | None = None
    teacher_test: dict[str, float] | None = field(default=None)
    cache: CacheConfig = field(default_factory=CacheConfig)  # the teacher-output cache's settings

    def __post_init__(self) -> None:
        if self.teacher is not None:
            self.teacher.to(self.device)
            self.predictions = TeacherPredictions(self.teacher, self.sources, self.device)

    def teacher_logits(self, split: str) -> torch.Tensor | None:
        return None if self.predictions is None else self.predictions.table(split)

    def teacher_metrics(self) -> dict[str, float]:
        """The teacher's own test accuracy, NLL and ECE (computed once)."""
        if self.teacher_test is None:
            assert self.teacher is not None and self.sources.test is not None
            logits = self.teacher_logits("test")
            if logits is None:
                out, targets, _ = predict_all(
                    {"t": lambda b: self.teacher(b.x).logits}, self.sources.test.epoch(0), self.device
                )
                logits = out["t"]
            else:
                targets = torch.cat([b.y for b in self.sources.test.epoch(0)])
            self.teacher_test = split_metrics(logits, targets, None)
        return self.teacher_test


def _evaluate(student: nn.Module, shared: Shared, split: str) -> dict[str, float]:
    """Student metrics on a fixed split, against the teacher when there is one."""
    source = shared.sources.split(split)
    assert source is not None
    table = shared.teacher_logits(split)
    predictors = {"s": model_predictor(student)}
    if shared.teacher is not None and table is None:
        predictors["t"] = lambda b: shared.teacher(b.x).logits
    with eval_mode(student):
        logits, targets, index = predict_source(predictors, source, shared.device)  # shared out under torchrun
    teacher_logits = logits.get("t", None if table is None else table[index])
    return split_metrics(logits["s"], targets, teacher_logits)


def _interpolate(student: nn.Module, shared: Shared, lam: float) -> None:
    if shared.teacher is None or shared.teacher.size != 1:
        raise ConfigError("student_init=λ interpolates from one teacher; give a single teacher (not an ensemble).")
    source = shared.sources.train_eval
    assert source is not None
    interpolate_from_teacher(student, shared.teacher.members[0], lam, (b.x for b in source.epoch(0)))


def _evaluate_views(student: nn.Module, shared: Shared, seed: int) -> dict[str, float]:
    """Student vs teacher, both in eval mode, on the augmented training views of the first epoch — the
    distillation data actually used (Stanton et al.'s train agreement, measured after training)."""
    assert shared.teacher is not None
    predictors = {"s": model_predictor(student), "t": lambda b: shared.teacher(b.x).logits}
    with eval_mode(student):
        logits, targets, _ = predict_source(predictors, shared.sources.make_train(seed), shared.device)
    return split_metrics(logits["s"], targets, logits["t"])


def _depths(student: DepthSwitch, shared: Shared) -> dict[str, dict[str, Any]]:
    """Figures for every depth (sub-nets' BatchNorm recalibrated on training images first)."""
    test, train = shared.sources.test, shared.sources.train_eval
    assert test is not None
    table = shared.teacher_logits("test")
    return depth_figures(
        student,
        lambda: test.epoch(0),
        shared.sources.info,
        shared.device,
        calibration=train.epoch(0) if train is not None else None,
        teacher_logits=(lambda index: table[index]) if table is not None else None,
    )


def run_member(
    member: Member,
    shared: Shared,
    *,
    make_student: Callable[[], nn.Module],
    recipe: Recipe,
    resume: bool = False,
    progress: bool = True,
    teacher_cache: bool = True,
    spec: ModelSpec | None = None,
    extra: dict[str, Any] | None = None,
    reference: Shared | None = None,
    init_lambda: float | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train one student (or, without a teacher, one model) and write its folder; returns it and its summary.

    ``reference``: measure fidelity against this experiment's teacher instead of the one the student
    learns from (the independent-student control). ``init_lambda``: start the student at
    λ·teacher + (1 − λ)·its fresh init, BatchNorm statistics recomputed on the training data."""
    started = time.perf_counter()
    torch.manual_seed(member.seed)
    student = make_student().to(shared.device)
    if init_lambda is not None:
        _interpolate(student, shared, init_lambda)
    info = shared.sources.info
    context = MethodContext(
        student,
        shared.teacher,
        info.num_classes,
        input_shape=(info.in_channels, *info.image_size),
        num_train=shared.sources.num_train,
        epochs=recipe.epochs,
    )
    method = build_method(member.method.name, member.method.params, context).to(shared.device)
    if method.needs_teacher and shared.teacher is None:
        raise ConfigError(f"Method {member.method.name!r} needs a teacher; give teacher=... (or use method=ce).")
    if shared.sources.source_temperatures and method.needs_teacher and not uses_source_temperature(member.method.name):
        raise ConfigError(
            f"Method {member.method.name!r} does not distil at per-source temperatures, but data.temperature or "
            "data.extra[i].temperature is set. Use method=kd (or a combination with kd), or drop those temperatures."
        )
    teacher_source = None
    if shared.teacher is not None:
        shared.teacher.tap(method.teacher_layers)
    source_description = None
    if shared.teacher is not None and method.needs_teacher:
        teacher_source, source_description = select_teacher_source(
            method,
            shared.teacher,
            shared.teacher_name or "teacher",
            shared.sources,
            shared.cache,
            enabled=teacher_cache,
            precision=recipe.precision,
            device=shared.device,
            log=(lambda message: print(message, file=sys.stderr)) if progress else (lambda message: None),
        )
    engine = Engine(
        student=student,
        method=method,
        train=shared.sources.make_train(member.seed),
        recipe=replace(recipe, seed=member.seed),
        state_path=member.folder.state_path,
        teacher=teacher_source,
        evaluate=(lambda: _evaluate(student, shared, "val")) if shared.sources.val is not None else None,
        on_epoch=member.folder.write_metrics,
        progress=progress,
        label=member.label,
    )
    fit_started = time.perf_counter()
    history = engine.fit(resume=resume)
    fit_ended = time.perf_counter()
    key = "student" if shared.teacher is not None else "model"
    learned_from, shared = shared, reference or shared  # from here on, fidelity is measured against `shared`
    result: dict[str, Any] = {
        key: {
            "name": spec.name if spec else type(student).__name__,
            "parameters": sum(p.numel() for p in student.parameters()),
        },
    }
    if isinstance(student, DepthSwitch) and shared.sources.test is not None:
        result[key]["depths"] = _depths(student, shared)
    if shared.sources.test is not None:
        result[key]["test"] = _evaluate(student, shared, "test")
    if shared.sources.train_eval is not None:
        result[key]["train"] = _evaluate(student, shared, "train")
    if shared.teacher is not None and not shared.sources.fixed_views:
        result[key]["train_views"] = _evaluate_views(student, shared, member.seed)
    if reference is not None:
        result[key]["learned_from"] = learned_from.teacher_name
        if learned_from.sources.test is not None:
            result[key]["test_own_teacher"] = _evaluate(student, learned_from, "test")
    if shared.teacher is not None:
        result = {
            "teacher": {
                "name": shared.teacher_name,
                "members": shared.teacher.size,
                "test": shared.teacher_metrics(),
            },
            **result,
        }
    training_time = history[-1]["time_s"] if history else 0.0
    summary = {
        **result,
        "method": {"name": member.method.name, **params_mapping(getattr(method, "params", {}))},
        "role": member.role,
        "seed": member.seed,
        "epochs": recipe.epochs,
        "data": info.name,
        "device": str(shared.device),
        # training time accumulates over resumes; add this process's set-up and final evaluation
        "wall_time_s": round(training_time + (fit_started - started) + (time.perf_counter() - fit_ended), 2),
        "train_time_s": training_time,
        **({"teacher_source": source_description} if source_description else {}),
        "versions": versions(),
        **(extra or {}),
    }
    metrics = {
        **summary[key].get("test", {}),
        **({"depths": summary[key]["depths"]} if "depths" in summary[key] else {}),
    }
    if distributed.is_main():  # every rank holds the same figures; one writes them
        save_model_file(member.folder.model_path, student, spec, info, metrics)
        member.folder.write_summary(summary)
    return student, summary
