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

from kdlab.core.batch import Batch
from kdlab.core.errors import ConfigError
from kdlab.core.outputs import ModelOutput
from kdlab.core.registry import Registry
from kdlab.core.typecheck import build_dataclass
from kdlab.training.teachers import Teacher


@runtime_checkable
class Method(Protocol):
    """What the engine needs from a method."""

    needs_teacher: bool
    student_layers: tuple[str, ...]
    teacher_layers: tuple[str, ...]

    def __call__(self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch) -> dict[str, torch.Tensor]: ...


# Optional: ``start_epoch(epoch: int, epochs: int) -> None`` is called before every epoch (also after a
# resume) by the engine, for schedules such as a loss weight's warm-up or an annealed mixing coefficient.


@dataclass
class MethodContext:
    """What a method may look at when it is built (e.g. to size a regressor from feature shapes).

    ``input_shape`` is one example's shape (C, H, W), for probing layer shapes; ``num_train`` is the
    number of training examples (memory banks index them by ``batch.index``); ``epochs`` the run's length.
    """

    student: nn.Module
    teacher: Teacher | None
    num_classes: int
    input_shape: tuple[int, ...] = ()
    num_train: int = 0
    epochs: int = 1

    def teacher_model(self, method: str) -> nn.Module:
        """The single teacher network whose features a method reads."""
        if self.teacher is None:
            raise ConfigError(f"Method {method!r} needs a teacher.")
        if self.teacher.size != 1:
            raise ConfigError(
                f"Method {method!r} reads teacher features, which an ensemble of {self.teacher.size} models does not "
                "have; use a single teacher or a logit method (kd, dkd, ...)."
            )
        return self.teacher.members[0]


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


def parts(name: str) -> list[str]:
    """The registered methods a (possibly combined, ``kd+at``) method name is made of."""
    names = [part.strip() for part in name.split("+")]
    for part in names:
        METHODS.get(part)
    if len(set(names)) != len(names):
        raise ConfigError(f"Method {name!r} names a method twice.")
    return names


def method_params(name: str, values: Mapping[str, Any]) -> Any:
    """Checked hyper-parameters of method ``name`` (the paper's defaults where not given).

    A combined method ``a+b`` takes one mapping per part: ``{"a": {...}, "b": {...}}``.
    """
    names = parts(name)
    if len(names) == 1:
        return build_dataclass(METHODS.get(name).params, values, "method")
    unknown = [k for k in values if k not in names]
    if unknown:
        raise ConfigError(
            f"Method {name!r} combines {', '.join(names)}; give each part's options under its name "
            f"(e.g. method.{names[-1]}.weight=...), not {unknown[0]!r}."
        )
    out = {}
    for part in names:
        sub = values.get(part) or {}
        if not isinstance(sub, Mapping):
            raise ConfigError(f"method.{part} must be a mapping of {part}'s options; got {sub!r}.")
        out[part] = build_dataclass(METHODS.get(part).params, sub, f"method.{part}")
    return out


def needs_teacher(name: str) -> bool:
    return any(METHODS.get(part).build.needs_teacher for part in parts(name))


def uses_source_temperature(name: str) -> bool:
    """Whether method ``name`` distils each example at its data source's temperature (``batch.temperature``)."""
    return any(getattr(METHODS.get(part).build, "source_temperature", False) for part in parts(name))


def params_mapping(params: Any) -> dict[str, Any]:
    """Hyper-parameters (a dataclass, or one per part of a combined method) as a plain mapping."""
    if isinstance(params, dict):
        return {part: params_mapping(p) for part, p in params.items()}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(params).items()}


def build_method(name: str, values: Mapping[str, Any], context: MethodContext) -> nn.Module:
    """Build method ``name`` with hyper-parameters ``values`` (checked against its dataclass).

    ``a+b`` builds both and sums their terms (see :class:`kdlab.methods.combined.Combined`).
    """
    params = method_params(name, values)
    if not isinstance(params, dict):
        return METHODS.get(name).build(params, context)
    from kdlab.methods.combined import Combined

    return Combined({part: METHODS.get(part).build(p, context) for part, p in params.items()}, params)
