"""Representation similarity between a teacher and a student: features of named layers, their linear and RBF CKA,
and the linear-CKA matrix of their stages (Ojha et al. 2023, App. 11.6) — a distilled student should sit closer to
its teacher on the diagonal."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from kdlab.core.batch import Batch
from kdlab.core.errors import ConfigError
from kdlab.core.modes import eval_mode
from kdlab.metrics import as_matrix, linear_cka, rbf_cka
from kdlab.training.taps import Taps
from kdlab.training.teachers import Teacher


def cka_matrix(
    teacher: nn.Module,
    student: nn.Module,
    batches: Iterable[Batch],
    teacher_layers: Sequence[str] | None = None,
    student_layers: Sequence[str] | None = None,
    limit: int = 1000,
) -> torch.Tensor:
    """``[len(teacher_layers), len(student_layers)]`` linear CKA on the first ``limit`` examples; the layers
    default to each model's ``stage_names`` (zoo models)."""
    t_layers = list(teacher_layers or getattr(teacher, "stage_names", ()))
    s_layers = list(student_layers or getattr(student, "stage_names", ()))
    if not t_layers or not s_layers:
        raise ValueError("name the layers to compare (teacher_layers / student_layers): the models have no stage_names")
    features = layer_features({"t": (teacher, t_layers), "s": (student, s_layers)}, batches, limit)
    return torch.tensor(
        [[float(linear_cka(features["t"][t], features["s"][s])) for s in s_layers] for t in t_layers],
        dtype=torch.float64,
    )


@torch.no_grad()
def layer_features(
    models: dict[str, tuple[nn.Module, Sequence[str]]], batches: Iterable[Batch], limit: int = 2000
) -> dict[str, dict[str, torch.Tensor]]:
    """``{model: {layer: [n, features]}}`` for the named layers of each model, in eval mode, on the first
    ``limit`` examples of ``batches`` (conv maps averaged over space per channel; kept on the host)."""
    taps = {key: Taps(model, layers, owner=key) for key, (model, layers) in models.items()}
    kept: dict[str, dict[str, list[torch.Tensor]]] = {
        key: {n: [] for n in layers} for key, (_, layers) in models.items()
    }
    seen = 0
    with contextlib.ExitStack() as stack:
        for key, (model, _) in models.items():
            stack.enter_context(taps[key])
            stack.enter_context(eval_mode(model))
        for batch in batches:
            for key, (model, _) in models.items():
                model(batch.x)
                for name, value in taps[key].collect().items():
                    kept[key][name].append(as_matrix(value).cpu())
            seen += len(batch)
            if seen >= limit:
                break
    return {key: {n: torch.cat(v)[:limit] for n, v in layers.items()} for key, layers in kept.items()}


def layer_cka(
    student: nn.Module, teacher: Teacher, pairs: list[tuple[str, str]], batches: Iterable[Batch], limit: int = 2000
) -> dict[str, dict[str, float]]:
    """Linear and RBF CKA between tapped student and teacher layers on the first ``limit`` examples of
    ``batches`` (conv maps averaged over space per channel); keys ``"student_layer~teacher_layer"``."""
    if teacher.size != 1:
        raise ConfigError(
            "CKA compares one teacher's layers with the student's; give a single teacher, not an ensemble."
        )
    layers = {"student": (student, [p[0] for p in pairs]), "teacher": (teacher.members[0], [p[1] for p in pairs])}
    features = layer_features(layers, batches, limit)
    out = {}
    for s_name, t_name in pairs:
        x, y = features["student"][s_name], features["teacher"][t_name]
        out[f"{s_name}~{t_name}"] = {"linear": float(linear_cka(x, y)), "rbf": float(rbf_cka(x, y))}
    return out
