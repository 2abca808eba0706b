"""An image-classification job's runs: students from the zoo (or the user's module), their method context, the
teacher's outputs (cached or online), the figures after training and the job's table."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdlab.core.errors import ConfigError
from kdlab.methods import MethodContext, uses_source_temperature
from kdlab.models.depth import DepthSwitch
from kdlab.models.factory import OBJECT, build_model, check_models
from kdlab.models.files import save_model_file
from kdlab.pipeline.config import Config
from kdlab.pipeline.task import Command, Log, Member
from kdlab.reporting.tables import Column, comparison_table
from kdlab.tasks.image import evaluate as measure
from kdlab.tasks.image.evaluate import Shared
from kdlab.tasks.image.tables import COLUMNS, COMPARE_COLUMNS, depth_table
from kdlab.tasks.image.teacher_source import check_settings, teacher_source
from kdlab.training.engine import BatchSource, Recipe, TeacherSource
from kdlab.training.interpolation import interpolate_from_teacher, interpolate_state


@dataclass
class ImageExperiment:
    """The data, the teacher (and the control teacher t′) of one image job, and the user's student module when the
    Python API gave one."""

    config: Config
    command: Command
    main: Shared
    control: Shared | None = None
    student_module: nn.Module | None = None

    @property
    def device(self) -> torch.device:
        return self.main.device

    @property
    def teacher_name(self) -> str | None:
        return self.main.teacher_name

    def learns_from(self, member: Member) -> Shared:
        """The control learns from t′; every other run from the job's teacher."""
        return self.control if member.role == "control" and self.control is not None else self.main

    def build_student(self, member: Member) -> nn.Module:
        info = self.main.sources.info
        student = self.student_module or build_model(self.config.student, info)
        check_models([student.to(self.device)], info, self.device, role="The student")
        return student

    def method_context(self, member: Member, student: nn.Module, epochs: int) -> MethodContext:
        sources = self.learns_from(member).sources
        return MethodContext(
            student,
            self.learns_from(member).teacher,
            sources.info.num_classes,
            input_shape=sources.info.input_shape,
            num_train=sources.num_train,
            epochs=epochs,
        )

    def _interpolates(self, member: Member) -> bool:
        return self.config.student_init is not None and member.method.name != "ce"

    def check(self, member: Member, student: nn.Module, method: nn.Module) -> None:
        shared = self.learns_from(member)
        name = member.method.name
        if method.needs_teacher and shared.teacher is None:
            raise ConfigError(f"Method {name!r} needs a teacher; give teacher=... (or use method=ce).")
        if shared.sources.source_temperatures and method.needs_teacher and not uses_source_temperature(name):
            raise ConfigError(
                f"Method {name!r} does not distil at per-source temperatures, but data.temperature or "
                "data.extra[i].temperature is set. Use method=kd (or a combination with kd), or drop those "
                "temperatures."
            )
        if self._interpolates(member):
            teacher = self._single_teacher(shared)
            interpolate_state(teacher.state_dict(), student.state_dict(), self.config.student_init or 0.0)
        if shared.teacher is not None and method.needs_teacher and self.config.teacher_cache:
            check_settings(self.config.cache, shared.sources.info.num_classes)

    @staticmethod
    def _single_teacher(shared: Shared) -> nn.Module:
        if shared.teacher is None or shared.teacher.size != 1:
            raise ConfigError("student_init=λ interpolates from one teacher; give a single teacher (not an ensemble).")
        return shared.teacher.members[0]

    def prepare_student(self, member: Member, student: nn.Module) -> None:
        if not self._interpolates(member):
            return
        shared = self.learns_from(member)
        source = shared.sources.train_eval
        assert source is not None and self.config.student_init is not None
        lam = self.config.student_init
        interpolate_from_teacher(student, self._single_teacher(shared), lam, (b.x for b in source.epoch(0)))

    def train_batches(self, member: Member) -> BatchSource:
        return self.learns_from(member).sources.make_train(member.seed)

    def teacher_source(
        self, member: Member, method: nn.Module, recipe: Recipe, log: Log
    ) -> tuple[TeacherSource | None, dict[str, Any] | None]:
        shared = self.learns_from(member)
        if shared.teacher is None:
            return None, None
        shared.teacher.tap(method.teacher_layers)
        if not method.needs_teacher:
            return None, None
        return teacher_source(
            method,
            shared.teacher,
            shared.teacher_name or "teacher",
            shared.sources,
            self.config.cache,
            enabled=self.config.teacher_cache,
            precision=recipe.precision,
            device=self.device,
            log=log,
        )

    def validate(self, member: Member, student: nn.Module) -> Callable[[], dict[str, float]] | None:
        shared = self.learns_from(member)
        return (lambda: measure.evaluate(student, shared, "val")) if shared.sources.val is not None else None

    def figures(self, member: Member, student: nn.Module) -> dict[str, Any]:
        learned_from = self.learns_from(member)
        shared = self.main  # fidelity is measured against the job's teacher, also for the control
        name = self.config.student.name
        out: dict[str, Any] = {
            "name": type(student).__name__ if name.startswith(OBJECT) else name,
            "parameters": sum(p.numel() for p in student.parameters()),
        }
        sources = shared.sources
        if isinstance(student, DepthSwitch) and sources.test is not None:
            out["depths"] = measure.depths(student, shared)
        if sources.test is not None:
            out["test"] = measure.evaluate(student, shared, "test")
        if sources.train_eval is not None:
            out["train"] = measure.evaluate(student, shared, "train")
        if shared.teacher is not None and not sources.fixed_views:
            out["train_views"] = measure.evaluate_views(student, shared, member.seed)
        if learned_from is not shared:
            out["learned_from"] = learned_from.teacher_name
            if learned_from.sources.test is not None:
                out["test_own_teacher"] = measure.evaluate(student, learned_from, "test")
        if shared.teacher is None:
            return {"student": out}
        teacher: dict[str, Any] = {"name": shared.teacher_name, "members": shared.teacher.size}
        if sources.test is not None:
            teacher["test"] = shared.teacher_metrics()
        return {"teacher": teacher, "student": out}

    def record(self, member: Member) -> dict[str, Any]:
        return {"data": self.main.sources.info.name}

    def save_model(self, path: Path, student: nn.Module, metrics: dict[str, Any]) -> None:
        spec = None if self.config.student.name.startswith(OBJECT) else self.config.student
        kept = {**metrics.get("test", {}), **({"depths": metrics["depths"]} if "depths" in metrics else {})}
        save_model_file(path, student, spec, self.main.sources.info, kept)

    def table(self, rows: Sequence[tuple[str, Sequence[dict[str, Any]]]]) -> str:
        teacher = self.main.teacher_metrics() if self.main.teacher is not None and self.main.sources.test else None
        table = comparison_table(COLUMNS, rows, teacher)
        depths = depth_table(rows)
        return f"{table}\n\nper depth (sub-nets of one set of weights):\n{depths}" if depths else table

    def columns(self) -> list[Column]:
        return list(COMPARE_COLUMNS)
