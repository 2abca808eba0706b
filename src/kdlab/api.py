"""The Python API: distil (or train) the user's own models on the user's own data.

>>> result = kdlab.distill(teacher=big_model, student=small_model, train=(x, y), test=(x_test, y_test),
...                        method="kd", temperature=4.0, epochs=5)
>>> result.metrics["student"]["test"]["agreement"]
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from kdlab.core.errors import ConfigError
from kdlab.core.typecheck import build_dataclass
from kdlab.data.policies import Augment
from kdlab.data.user import UserData, user_sources
from kdlab.methods import method_params, needs_teacher, params_mapping
from kdlab.models.factory import ModelSpec, build_model, check_models, check_teacher, teacher_members
from kdlab.pipeline.config import DataConfig, MethodConfig, build_augment
from kdlab.pipeline.execute import summary_record
from kdlab.pipeline.member import Member, Shared, resolve_device, run_member
from kdlab.runs.folder import RunFolder, unique_name
from kdlab.runs.index import RunIndex, RunRecord
from kdlab.tasks.image.sources import config_sources
from kdlab.training import distributed
from kdlab.training.engine import Recipe
from kdlab.training.optim import OptimConfig
from kdlab.training.predict import eval_mode, layer_cka, predict_all, split_metrics
from kdlab.training.teachers import Teacher

TeacherLike = nn.Module | Sequence[nn.Module] | str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


@dataclass
class DistillResult:
    """The trained student, its metrics (``{"teacher": {"test"}, "student": {"test", "train"}}``),
    the per-epoch history and the run folder."""

    student: nn.Module
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    run_dir: Path
    summary: dict[str, Any]


def _teacher(teacher: TeacherLike, info: Any, device: torch.device) -> Teacher:
    if isinstance(teacher, Teacher):
        members: list[nn.Module] = list(teacher.members)
    elif isinstance(teacher, nn.Module):
        members = [teacher]
    elif isinstance(teacher, str | os.PathLike):
        members = teacher_members([str(teacher)], info)
    elif isinstance(teacher, Sequence) and teacher:
        members = [m for t in teacher for m in ([t] if isinstance(t, nn.Module) else teacher_members([str(t)], info))]
    else:
        raise ConfigError(f"teacher must be an nn.Module, a list of them, or a path/pretrained name; got {teacher!r}.")
    out = Teacher(members).to(device)
    check_teacher(out, info, device)
    return out


def distill(
    teacher: TeacherLike | None,
    student: nn.Module | str,
    train: UserData,
    test: UserData | None = None,
    *,
    method: str = "kd",
    val: UserData | None = None,
    epochs: int = 10,
    batch_size: int = 128,
    optimizer: str = "sgd",
    lr: float = 0.05,
    weight_decay: float = 5e-4,
    schedule: str = "cosine",
    warmup_epochs: float = 0.0,
    augment: Augment | str | dict[str, Any] | None = None,
    device: str = "auto",
    seed: int = 0,
    runs_dir: str | Path = "runs",
    name: str | None = None,
    progress: bool = False,
    teacher_cache: bool = True,
    **hyper_parameters: Any,
) -> DistillResult:
    """Distil ``teacher`` (a model, a list of models = an ensemble, or a saved one) into ``student``.

    ``train``/``test``/``val`` are ``(x, y)`` tensors, a ``Dataset`` of ``(input, label)`` pairs, a
    ``DataLoader``, or a kdlab data set name (e.g. ``"fashion_mnist"``, then ``test`` is its test split).
    ``student`` is an ``nn.Module`` or a zoo name. ``hyper_parameters`` go to the method (e.g.
    ``temperature=4``, ``alpha=0.1``; feature methods take ``student_layers``/``teacher_layers``,
    module paths). Writes ``runs_dir/name`` and returns the trained student with its metrics.
    """
    if distributed.launched():
        raise ConfigError(
            "kdlab.distill and kdlab.train train in one process, but this one was started by torchrun with "
            f"{distributed.world_size()}. For data-parallel training use the command: torchrun ... -m kdlab distill "
            "(your own model as student=package.module:callable); or run this script with plain python."
        )
    dev = resolve_device(device)
    params = method_params(method, hyper_parameters)
    if teacher is None and needs_teacher(method):
        raise ConfigError(f"Method {method!r} needs a teacher; pass teacher=... (or use method='ce').")
    optim = build_dataclass(
        OptimConfig,
        {
            "name": optimizer,
            "lr": lr,
            "weight_decay": weight_decay,
            "schedule": schedule,
            "warmup_epochs": warmup_epochs,
        },
        "optimizer",
    )
    aug = build_augment(augment, "augment")
    sources = user_sources(train, test, val, batch_size=batch_size, augment=aug, device=dev)
    shared_teacher = None if teacher is None else _teacher(teacher, sources.info, dev)
    shared = Shared(sources, dev, shared_teacher, None if teacher is None else _describe(teacher))
    spec = ModelSpec(student, {}) if isinstance(student, str) else None
    if spec is None:
        check_models([student], sources.info, next(student.parameters()).device, role="Student")
    make = (lambda: build_model(spec, sources.info)) if spec else (lambda: student)
    command = "distill" if teacher is not None else "train"
    root = Path(runs_dir)
    folder = RunFolder(root / (name or unique_name(root, f"api-{command}-{method}")))
    mapping = {
        "api": True,
        "command": command,
        "teacher": shared.teacher_name,
        "student": student if isinstance(student, str) else type(student).__name__,
        "method": {"name": method, **params_mapping(params)},
        "epochs": epochs,
        "batch_size": batch_size,
        "optim": vars(optim),
        "augment": vars(aug),
        "seed": seed,
        "data": sources.info.name,
    }
    folder.claim(mapping, command=command, resume=False)
    member = Member(folder, seed, MethodConfig(method, params_mapping(params)), label=f"{method} seed {seed}")
    record = RunRecord(
        name=folder.path.name,
        command=command,
        status="running",
        started=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        method=method,
        teacher=shared.teacher_name,
        student=mapping["student"],
        dataset=sources.info.name,
        seed=seed,
        epochs=epochs,
    )
    index = RunIndex(root)
    index.record(record)
    try:
        model, summary = run_member(
            member,
            shared,
            make_student=make,
            recipe=Recipe(epochs, optim, seed),
            progress=progress,
            teacher_cache=teacher_cache,
            spec=spec,
        )
    except Exception:
        index.record(RunRecord(**{**vars(record), "status": "failed"}))
        raise
    index.record(summary_record(record, summary))
    history = [json.loads(line) for line in (folder.path / "metrics.jsonl").read_text().splitlines()]
    metrics = {k: v for k, v in summary.items() if k in ("teacher", "student", "model")}
    return DistillResult(model, metrics, history, folder.path, summary)


def train(model: nn.Module | str, train: UserData, test: UserData | None = None, **kwargs: Any) -> DistillResult:
    """Train ``model`` without a teacher: from labels alone (``method="ce"``) — a teacher, or the independent-student
    control — or a depth-switchable model with embedded KD (``method="ekd"``)."""
    return distill(None, model, train, test, method=kwargs.pop("method", "ce"), **kwargs)


def evaluate(
    teacher: TeacherLike,
    student: nn.Module | str,
    data: UserData,
    *,
    split: Literal["test", "val", "train"] = "test",
    device: str = "auto",
    batch_size: int = 256,
    cka: Sequence[tuple[str, str]] = (),
    cka_examples: int = 2000,
) -> dict[str, dict[str, Any]]:
    """Fidelity of ``student`` to ``teacher`` on ``data``; for a data set name, on its ``split``
    (``val`` and ``train`` as kdlab splits the training set by default).

    Returns ``{"teacher": {accuracy, nll, ece}, "student": {accuracy, nll, ece, agreement, kl, tv}}``
    (accuracy/NLL/ECE only where the data are labelled). ``cka`` pairs a student layer with a teacher layer
    (module paths); each pair adds ``result["cka"]["student~teacher"] = {"linear", "rbf"}`` measured on the
    first ``cka_examples`` examples of the split.
    """
    dev = resolve_device(device)
    if isinstance(data, str):
        sources = config_sources(DataConfig(name=data, eval_batch_size=batch_size), dev)
    else:
        sources = user_sources(data, data, None, batch_size=batch_size, augment=Augment(), device=dev)
        split = "test"
    source, info = sources.split(split), sources.info
    t = _teacher(teacher, info, dev)
    s = teacher_members([student], info)[0] if isinstance(student, str) else student
    s = s.to(dev)
    check_models([s], info, dev, role="Student")
    with eval_mode(s):
        logits, targets, _ = predict_all({"s": lambda b: s(b.x), "t": lambda b: t(b.x).logits}, source.epoch(0), dev)
    result: dict[str, dict[str, Any]] = {
        "teacher": split_metrics(logits["t"], targets, None),
        "student": split_metrics(logits["s"], targets, logits["t"]),
    }
    if cka:
        result["cka"] = layer_cka(s, t, list(cka), source.epoch(0), cka_examples)
    return result


def _describe(teacher: TeacherLike) -> str:
    if isinstance(teacher, str | os.PathLike):
        return str(teacher)
    if isinstance(teacher, nn.Module):
        return type(teacher).__name__
    return "ensemble(" + ", ".join(_describe(t) for t in teacher) + ")"
