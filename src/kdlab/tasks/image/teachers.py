"""An image job's frozen teacher: from a configuration's teacher list (``pretrained:NAME``, run folders, run groups,
model files, ``{name: ARCH, checkpoint: PATH}``) or from models given to the Python API, checked on the data."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from kdlab.core.errors import ConfigError
from kdlab.data.base import DataInfo
from kdlab.models.factory import check_models
from kdlab.models.files import teacher_members
from kdlab.training.teachers import Teacher

TeacherLike = nn.Module | Sequence[nn.Module] | str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def load_teacher(teacher: TeacherLike | Sequence[Any], info: DataInfo, device: torch.device) -> Teacher:
    """A frozen :class:`~kdlab.training.teachers.Teacher` (a list of several = an ensemble) that takes the data's
    inputs and predicts its classes."""
    if isinstance(teacher, Teacher):
        members: list[nn.Module] = list(teacher.members)
    elif isinstance(teacher, nn.Module):
        members = [teacher]
    elif isinstance(teacher, str | os.PathLike):
        members = teacher_members([str(teacher)], info)
    elif isinstance(teacher, Sequence) and teacher:
        members = []
        for t in teacher:
            spec = t if isinstance(t, dict) else str(t)
            members += [t] if isinstance(t, nn.Module) else teacher_members([spec], info)
    else:
        raise ConfigError(f"teacher must be an nn.Module, a list of them, or a path/pretrained name; got {teacher!r}.")
    out = Teacher(members).to(device)
    check_models(list(out.members), info, device, role="Teacher model" if len(members) > 1 else "Teacher")
    return out


def describe(teacher: TeacherLike | Sequence[Any]) -> str:
    """How a run's summary and the index name a teacher."""
    if isinstance(teacher, str | os.PathLike):
        return str(teacher)
    if isinstance(teacher, nn.Module):
        return type(teacher).__name__
    return "ensemble(" + ", ".join(describe(t) for t in teacher) + ")"
