"""Representation similarity between a teacher and a student (Ojha et al. 2023, App. 11.6): the linear-CKA
matrix of their stages — a distilled student should sit closer to its teacher on the diagonal."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from kdlab.core.batch import Batch
from kdlab.metrics import linear_cka
from kdlab.tasks.image.layers import layer_features


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
