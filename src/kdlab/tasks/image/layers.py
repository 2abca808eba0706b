"""Features of named layers of image models (conv maps averaged over space per channel) and the linear and RBF CKA
between a student's and a teacher's layers."""

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
