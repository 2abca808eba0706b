"""The method contract and the method registry.

A method is an ``nn.Module`` (so its trainable parts — regressors, embeddings — are optimised and
checkpointed with the student) that turns the student's and the teacher's outputs on a batch into a
dict of named, already weighted loss terms. The engine sums the terms and logs each; it knows
nothing about any particular method.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from kdlab.data.loader import Batch
from kdlab.outputs import ModelOutput
from kdlab.registry import Registry
from kdlab.teachers import Teacher
from kdlab.typecheck import build_dataclass


@runtime_checkable
class Method(Protocol):
    """What the engine needs from a method."""

    needs_teacher: bool
    student_layers: tuple[str, ...]
    teacher_layers: tuple[str, ...]

    def __call__(self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch) -> dict[str, torch.Tensor]: ...


@dataclass
class MethodContext:
    """What a method may look at when it is built (e.g. to size a regressor from feature shapes)."""

    student: nn.Module
    teacher: Teacher | None
    num_classes: int


@dataclass(frozen=True)
class MethodEntry:
    name: str
    params: type
    build: Callable[[Any, MethodContext], nn.Module]

    @property
    def summary(self) -> str:
        doc = (self.build.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


METHODS: Registry[MethodEntry] = Registry("method")


def register_method(name: str, params: type) -> Callable[[type], type]:
    """Register the ``nn.Module`` class below as method ``name`` with hyper-parameter dataclass ``params``."""

    def add(cls: type) -> type:
        METHODS.register(name)(MethodEntry(name, params, cls))
        return cls

    return add


def method_params(name: str, values: Mapping[str, Any]) -> Any:
    """Checked hyper-parameters of method ``name`` (the paper's defaults where not given)."""
    return build_dataclass(METHODS.get(name).params, values, "method")


def build_method(name: str, values: Mapping[str, Any], context: MethodContext) -> nn.Module:
    """Build method ``name`` with hyper-parameters ``values`` (checked against its dataclass)."""
    entry = METHODS.get(name)
    return entry.build(method_params(name, values), context)
