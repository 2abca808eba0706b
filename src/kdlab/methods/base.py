"""The method contract and the one method registry.

A method is an ``nn.Module`` (so its trainable parts — regressors, embeddings — are optimised and
checkpointed with the student) that turns the student's and the teacher's outputs on a batch into a
dict of named, already weighted loss terms. The engine sums the terms and logs each; it knows
nothing about any particular method.

A method's hyper-parameters are its registered dataclass: :func:`method_params` turns the configured values into
that dataclass in one checked step (while a run is planned), and :func:`build_method` hands the typed object to the
method. Every method that uses the labels weighs their loss with ``ce_weight`` and names the term ``"ce"``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from kdlab.core.batch import Batch
from kdlab.core.errors import ConfigError
from kdlab.core.outputs import ModelOutput
from kdlab.core.registry import Entry, Registry
from kdlab.core.typecheck import build_dataclass
from kdlab.data.loader import image_extras
from kdlab.losses import label_cross_entropy
from kdlab.methods.combined import Combined


@runtime_checkable
class Method(Protocol):
    """What the engine needs from a method."""

    needs_teacher: bool
    student_layers: tuple[str, ...]
    teacher_layers: tuple[str, ...]

    def __call__(self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch) -> dict[str, torch.Tensor]: ...


# Optional: ``start_epoch(epoch: int, epochs: int) -> None`` is called before every epoch (also after a
# resume) by the engine, for schedules such as a loss weight's warm-up or an annealed mixing coefficient.


class LabelLoss(Protocol):
    """A task's loss with the labels (a scalar averaged over the labelled examples of the batch)."""

    def __call__(self, student: ModelOutput, batch: Batch, label_smoothing: float = 0.0) -> torch.Tensor: ...


def classification_labels(student: ModelOutput, batch: Batch, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy of class logits ``[B, c]`` with labels ``[B]`` (−1 ignored); inputs mixed by mixup/cutmix
    weigh both labels (:func:`kdlab.losses.label_cross_entropy`)."""
    extras = image_extras(batch)
    return label_cross_entropy(student.logits, batch.y, extras.mix_perm, extras.mix_lambda, label_smoothing)


@dataclass
class MethodContext:
    """What a method may look at when it is built (e.g. to size a regressor from feature shapes).

    ``input_shape`` is one example's shape (C, H, W), for probing layer shapes; ``num_train`` is the number of
    training examples (memory banks index them by ``batch.index``); ``epochs`` the run's length. ``label_loss`` is
    the task's loss with the labels (class cross-entropy by default); ``label_smoothing`` says whether it takes a
    smoothing. ``extras`` holds what a task adds for its own methods (the structured tasks: a
    :class:`kdlab.methods.structured.SequenceContext`).
    """

    student: nn.Module
    teacher: Any
    num_classes: int
    input_shape: tuple[int, ...] = ()
    num_train: int = 0
    epochs: int = 1
    label_loss: LabelLoss = classification_labels
    label_smoothing: bool = True
    extras: Any = None

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


def with_labels(
    terms: dict[str, torch.Tensor], ce_weight: float, label_loss: LabelLoss, student: ModelOutput, batch: Batch
) -> dict[str, torch.Tensor]:
    """``terms`` plus ``"ce"`` = ``ce_weight`` × the task's label loss (left out at weight 0)."""
    if ce_weight > 0:
        terms["ce"] = ce_weight * label_loss(student, batch)
    return terms


Build = Callable[[Any, MethodContext], nn.Module]


@dataclass(frozen=True)
class MethodEntry:
    """A registered method: its hyper-parameter dataclass, how to build it, and what the pipeline must know before
    building it (whether it needs a teacher; whether it distils at per-source temperatures)."""

    name: str
    params: type
    build: Build
    needs_teacher: bool
    summary: str
    source_temperature: bool = False


METHODS: Registry[MethodEntry] = Registry("method")


def add_method(
    name: str,
    params: type,
    build: Build,
    *,
    tasks: Iterable[str] | None,
    needs_teacher: bool,
    summary: str,
    source_temperature: bool = False,
) -> None:
    """Register method ``name`` built by ``build(params, context)`` for ``tasks`` (None: every task)."""
    entry = MethodEntry(name, params, build, needs_teacher, summary, source_temperature)
    METHODS.add(Entry(name, entry, None if tasks is None else tuple(tasks)))


def register_method(name: str, params: type, *, tasks: Iterable[str] | None) -> Callable[[type], type]:
    """Register the ``nn.Module`` class below as method ``name`` with hyper-parameter dataclass ``params``, for
    ``tasks`` (None: every task); the class's first docstring line is its catalogue summary."""

    def add(cls: type) -> type:
        doc = (cls.__doc__ or "").strip()
        summary = doc.splitlines()[0] if doc else ""
        add_method(
            name,
            params,
            cls,
            tasks=tasks,
            needs_teacher=bool(cls.needs_teacher),  # type: ignore[attr-defined]
            summary=summary,
            source_temperature=bool(getattr(cls, "source_temperature", False)),
        )
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


def check_task(name: str, task: str) -> None:
    """Every part of method ``name`` serves ``task``; else a ConfigError naming the methods that do."""
    for part in parts(name):
        METHODS.for_task(part, task)


def require(ok: bool, message: str) -> None:
    """A hyper-parameter check: a ConfigError with ``message`` when ``ok`` is false."""
    if not ok:
        raise ConfigError(message)


def _common_checks(where: str, params: Any) -> None:
    """Ranges every method shares: weights (``*weight``) ≥ 0, temperatures > 0 (numbers are finite already:
    :func:`~kdlab.core.typecheck.coerce` refuses inf and NaN)."""
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        if f.name.endswith("weight") and isinstance(value, (int, float)) and value < 0:
            raise ConfigError(f"{where}.{f.name} is a loss weight and must be ≥ 0; got {value}.")
        if f.name == "temperature" and isinstance(value, (int, float)) and value <= 0:
            raise ConfigError(f"{where}.temperature must be > 0; got {value}.")


def _typed(name: str, values: Mapping[str, Any], where: str) -> Any:
    params = build_dataclass(METHODS.get(name).params, values, where)
    _common_checks(where, params)
    return params


def method_params(name: str, values: Mapping[str, Any]) -> Any:
    """The typed, checked hyper-parameters of method ``name`` (the paper's defaults where not given).

    A combined method ``a+b`` takes one mapping per part, ``{"a": {...}, "b": {...}}``, and returns a dict of
    typed parameters per part. Already typed parameters are returned as they are.
    """
    names = parts(name)
    if len(names) == 1:
        if isinstance(values, METHODS.get(name).params):
            return values
        return _typed(name, values, "method")
    unknown = [k for k in values if k not in names]
    if unknown:
        raise ConfigError(
            f"Method {name!r} combines {', '.join(names)}; give each part's options under its name "
            f"(e.g. method.{names[-1]}.weight=...), not {unknown[0]!r}."
        )
    out = {}
    for part in names:
        sub = values.get(part) or {}
        if isinstance(sub, METHODS.get(part).params):
            out[part] = sub
            continue
        if not isinstance(sub, Mapping):
            raise ConfigError(f"method.{part} must be a mapping of {part}'s options; got {sub!r}.")
        out[part] = _typed(part, sub, f"method.{part}")
    return out


def needs_teacher(name: str) -> bool:
    return any(METHODS.get(part).needs_teacher for part in parts(name))


def uses_source_temperature(name: str) -> bool:
    """Whether method ``name`` distils each example at its data source's temperature (``extras.temperature``)."""
    return any(METHODS.get(part).source_temperature for part in parts(name))


def params_mapping(params: Any) -> dict[str, Any]:
    """Hyper-parameters (a dataclass, or one per part of a combined method) as a plain mapping."""
    if isinstance(params, dict):
        return {part: params_mapping(p) for part, p in params.items()}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(params).items()}


def build_method(name: str, params: Any, context: MethodContext) -> nn.Module:
    """Build method ``name`` from its hyper-parameters: typed (see :func:`method_params`, which the pipeline calls
    while planning), or a mapping typed here the same way.

    ``a+b`` builds both and sums their terms (see :class:`kdlab.methods.combined.Combined`).
    """
    params = method_params(name, params)
    if not isinstance(params, dict):
        return METHODS.get(name).build(params, context)
    return Combined({part: METHODS.get(part).build(p, context) for part, p in params.items()}, params)
